//! Plain text tables and human-readable sizes for -l, score and bench.

/// Columns sized to their widest cell; numbers right-aligned, text left-aligned.
pub struct Table {
    rows: Vec<Option<Vec<String>>>, // None: a rule
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![Some(headers.iter().map(|h| h.to_string()).collect())],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Some(cells));
    }

    pub fn rule(&mut self) {
        self.rows.push(None);
    }

    /// `left[i]`: left-align column i (text); otherwise right-align (numbers).
    pub fn render(&self, left: &[bool]) -> String {
        let ncol = self.rows.iter().flatten().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0usize; ncol];
        for r in self.rows.iter().flatten() {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let total: usize = width.iter().sum::<usize>() + 2 * ncol.saturating_sub(1);
        let mut out = String::new();
        for r in &self.rows {
            match r {
                None => out.push_str(&"-".repeat(total)),
                Some(cells) => {
                    let mut line = String::new();
                    for (i, c) in cells.iter().enumerate() {
                        if i > 0 {
                            line.push_str("  ");
                        }
                        let pad = width[i] - c.chars().count();
                        if left.get(i).copied().unwrap_or(false) {
                            line.push_str(c);
                            line.push_str(&" ".repeat(pad));
                        } else {
                            line.push_str(&" ".repeat(pad));
                            line.push_str(c);
                        }
                    }
                    out.push_str(line.trim_end());
                }
            }
            out.push('\n');
        }
        out
    }
}

/// `16.4 KiB`, like zstd -l.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.2} {}", UNITS[u])
    } else if v < 100.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// Throughput in decimal units (as compressor benchmarks print it): `8.1 KB/s`.
pub fn rate(bytes: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    let v = bytes as f64 / secs;
    if v >= 1e6 {
        format!("{:.1} MB/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} KB/s", v / 1e3)
    } else {
        format!("{v:.0} B/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.00 KiB");
        assert_eq!(human(16763), "16.4 KiB");
        assert_eq!(human(152089), "149 KiB");
        assert_eq!(human(5 << 20), "5.00 MiB");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["n", "name"]);
        t.row(vec!["10".into(), "a".into()]);
        t.row(vec!["7".into(), "bb".into()]);
        assert_eq!(t.render(&[false, true]), " n  name\n10  a\n 7  bb\n");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(8100, 1.0), "8.1 KB/s");
        assert_eq!(rate(2_500_000, 1.0), "2.5 MB/s");
        assert_eq!(rate(10, 0.0), "-");
    }
}
