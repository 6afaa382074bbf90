//! Cutting the input: segments of bytes (tokenized one by one) and the
//! chunks of tokens each segment is coded in (FORMAT.md section 5.1).

use std::io::{self, Read};

/// Reads input in segments of at most `segment_bytes`, each cut by
/// [`cut_point`]. The cuts depend only on the bytes (a reader's short reads
/// are filled up), so [`super::compress_stream`] and [`super::score()`] cut alike.
pub(super) struct Segmenter<R: Read> {
    reader: R,
    segment_bytes: usize,
    buf: Vec<u8>,
    /// Length of the segment last returned (still at the front of `buf`).
    cut: usize,
    eof: bool,
}

impl<R: Read> Segmenter<R> {
    pub(super) fn new(reader: R, segment_bytes: usize) -> Self {
        Segmenter {
            reader,
            segment_bytes,
            buf: Vec::new(),
            cut: 0,
            eof: false,
        }
    }

    /// The next segment, `None` at the end of the input.
    pub(super) fn next_segment(&mut self) -> io::Result<Option<&[u8]>> {
        self.buf.drain(..self.cut);
        self.cut = 0;
        // Fill the buffer up to one segment.
        while !self.eof && self.buf.len() < self.segment_bytes {
            let old = self.buf.len();
            self.buf.resize(self.segment_bytes, 0);
            match self.reader.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => return Err(e),
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.cut = cut_point(&self.buf, self.eof);
        Ok(Some(&self.buf[..self.cut]))
    }
}

/// Where to end the segment in `buf`: all of it at end of input, else after
/// its last newline, else at the last UTF-8 character boundary, else all.
///
/// Any cut decodes correctly (segments are tokenized independently and the
/// tokenizer round-trips any bytes); cutting at a newline merely keeps words
/// and characters whole, which the model predicts better.
pub(super) fn cut_point(buf: &[u8], eof: bool) -> usize {
    if eof {
        return buf.len();
    }
    if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    // Back up over at most 3 UTF-8 continuation bytes to a leading byte.
    let n = buf.len();
    for back in 0..4.min(n) {
        let b = buf[n - 1 - back];
        if b & 0xC0 != 0x80 {
            let need = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            return if back + 1 >= need || n - 1 - back == 0 {
                n
            } else {
                n - 1 - back
            };
        }
    }
    n
}

/// Whether `raw` is binary data rather than text: more than 1 byte in 8 is a
/// control character (other than tab, line feed, form feed, carriage return)
/// or part of an invalid UTF-8 sequence. A language model codes such bytes
/// far worse than zstd, so the compressor does not spend model time on them
/// (a compressor choice, not part of the format: FORMAT.md section 6).
pub fn looks_binary(raw: &[u8]) -> bool {
    let mut bad = raw
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | 0x0c | b'\r')) || b == 0x7f)
        .count();
    let mut rest = raw;
    while let Err(e) = std::str::from_utf8(rest) {
        let skip = e.error_len().unwrap_or(rest.len() - e.valid_up_to());
        bad += skip;
        rest = &rest[e.valid_up_to() + skip..];
    }
    bad * 8 > raw.len()
}
