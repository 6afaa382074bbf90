use super::*;
use crate::testing::Rng;

fn round_trip(bytes: &[u8]) {
    let (text, endings) = crlf_to_lf(bytes);
    assert_eq!(
        lf_to_crlf(&text, &endings).unwrap(),
        bytes,
        "input {bytes:?}"
    );
    let (crlf, bare) = count_line_endings(bytes);
    assert_eq!(endings.bare.len() as u64, bare);
    assert_eq!(text.len() as u64, bytes.len() as u64 - crlf);
}

#[test]
fn edge_cases_round_trip() {
    for case in [
        &b""[..],
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\r",
        b"\r\r\n",
        b"\r\n\n\r\n",
        b"a\r\nb\nc\r\n",
        b"line\r\nlast line ends in CR\r",
        b"\r\r\r\n\n\n\r",
        b"no line endings at all",
    ] {
        round_trip(case);
    }
}

#[test]
fn crlf_text_becomes_lf_text() {
    let (text, endings) = crlf_to_lf(b"one\r\ntwo\r\n\r\nthree\nfour\r");
    assert_eq!(text, b"one\ntwo\n\nthree\nfour\r");
    assert_eq!(endings.bare, vec![3]);
}

#[test]
fn random_bytes_round_trip() {
    let mut rng = Rng(0x5eed_c01f);
    for _ in 0..500 {
        let n = rng.below(200) as usize;
        // Mostly CR, LF and letters, so the interesting patterns are dense.
        let bytes: Vec<u8> = (0..n)
            .map(|_| match rng.below(5) {
                0 => b'\r',
                1 => b'\n',
                2 => rng.below(256) as u8,
                _ => b'a',
            })
            .collect();
        round_trip(&bytes);
    }
}

#[test]
fn out_of_range_exception_is_an_error() {
    let endings = LineEndings { bare: vec![0, 2] };
    assert_eq!(
        lf_to_crlf(b"a\nb\n", &endings),
        Err(TransformError::ExceptionRange { index: 2, lfs: 2 })
    );
}

#[test]
fn policy_needs_a_clear_majority() {
    assert!(crlf_pays(100, 0));
    assert!(crlf_pays(80, 10));
    assert!(!crlf_pays(79, 10));
    assert!(!crlf_pays(3, 0));
}
