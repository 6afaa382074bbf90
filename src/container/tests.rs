use super::*;

fn header() -> FrameHeader {
    FrameHeader {
        fingerprint: [7; 32],
        model_name: "tiny-model".into(),
        total_bits: 28,
        chunk_tokens: 2048,
    }
}

fn sample_frame() -> Vec<u8> {
    let mut out = encode_header(&header());
    write_model_chunk(&mut out, CoderKind::Arithmetic, 3, &[1, 2, 3]).unwrap();
    write_model_chunk(&mut out, CoderKind::Rank, 2048, &[]).unwrap();
    write_stored(&mut out, b"hello").unwrap();
    write_zstd(&mut out, 300, &[9; 20]).unwrap();
    write_end(&mut out, 12345, 0xdead_beef_0bad_f00d).unwrap();
    out
}

fn read_all(bytes: &[u8]) -> Result<Vec<(FrameHeader, Vec<Record>)>, ContainerError> {
    let mut r = FrameReader::new(bytes);
    let mut frames = Vec::new();
    while let Some(h) = r.read_header()? {
        let Header::V1(h) = h else {
            panic!("a version-1 frame")
        };
        let mut recs = Vec::new();
        loop {
            let rec = r.read_record(&h)?;
            let end = matches!(rec, Record::End { .. });
            recs.push(rec);
            if end {
                break;
            }
        }
        frames.push((h, recs));
    }
    Ok(frames)
}

#[test]
fn varints_round_trip_and_lengths() {
    for v in [
        0u64,
        1,
        127,
        128,
        300,
        16383,
        16384,
        u32::MAX as u64,
        u64::MAX,
    ] {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        assert_eq!(b.len(), varint_len(v), "{v}");
        let mut r = FrameReader::new(&b[..]);
        assert_eq!(r.varint("x", None).unwrap(), v);
        assert_eq!(r.offset(), b.len() as u64);
    }
}

#[test]
fn overlong_and_oversized_varints_are_rejected() {
    for bad in [
        &[0x80u8, 0x00][..],
        &[0xff, 0x80, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        &[0xff; 11],
    ] {
        let mut r = FrameReader::new(bad);
        assert!(
            matches!(r.varint("x", None), Err(ContainerError::Varint { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn frame_round_trip() {
    let frame = sample_frame();
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    let frames = read_all(&two).unwrap();
    assert_eq!(frames.len(), 2);
    let (h, recs) = &frames[1];
    assert_eq!(*h, header());
    assert_eq!(
        recs[0],
        Record::Model {
            coder: CoderKind::Arithmetic,
            tokens: 3,
            payload: vec![1, 2, 3]
        }
    );
    assert_eq!(
        recs[1],
        Record::Model {
            coder: CoderKind::Rank,
            tokens: 2048,
            payload: vec![]
        }
    );
    assert_eq!(recs[2], Record::Stored(b"hello".to_vec()));
    assert_eq!(
        recs[3],
        Record::Zstd {
            original_len: 300,
            payload: vec![9; 20]
        }
    );
    assert_eq!(
        recs[4],
        Record::End {
            original_len: 12345,
            checksum: 0xdead_beef_0bad_f00d
        }
    );
    // Sizes the writer predicts are the sizes written.
    let h_len = encode_header(&header()).len();
    let expected = h_len
        + model_chunk_len(3, 3)
        + model_chunk_len(2048, 0)
        + stored_len(5)
        + zstd_len(300, 20)
        + 1
        + varint_len(12345)
        + 8;
    assert_eq!(frame.len(), expected);
}

#[test]
fn header_layout() {
    // magic 4, version 1, total_bits 1, name_len 1, fingerprint 32, name 10,
    // chunk_tokens varint 2048 (2 bytes), check 4: FORMAT.md section 2.
    let h = encode_header(&header());
    assert_eq!(h.len(), 4 + 1 + 1 + 1 + 32 + 10 + 2 + 4);
    assert_eq!(&h[..7], &[0x4C, 0x4C, 0x4D, 0x63, 1, 28, 10]);
    assert_eq!(&h[49..51], &[0x80, 0x10]);
}

#[test]
fn empty_input_has_no_frames() {
    assert!(read_all(&[]).unwrap().is_empty());
}

#[test]
fn every_truncation_is_an_error() {
    let frame = sample_frame();
    for cut in 1..frame.len() {
        match read_all(&frame[..cut]) {
            Err(ContainerError::Truncated { .. }) => {}
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn header_corruption_is_detected() {
    let frame = sample_frame();
    let h_len = encode_header(&header()).len();
    for i in 0..h_len {
        for bit in 0..8 {
            let mut f = frame.clone();
            f[i] ^= 1 << bit;
            let err = read_all(&f).unwrap_err();
            assert!(
                matches!(
                    err,
                    ContainerError::BadMagic { .. }
                        | ContainerError::Version { .. }
                        | ContainerError::HeaderCheck { .. }
                        | ContainerError::OutOfRange { .. }
                        | ContainerError::Varint { .. }
                        | ContainerError::Truncated { .. }
                ),
                "byte {i} bit {bit}: {err:?}"
            );
        }
    }
}

#[test]
fn caps_are_enforced_before_allocation() {
    let h = header();
    let mut f = encode_header(&h);
    // A model chunk claiming more tokens than the header allows.
    f.push(KIND_ARITHMETIC);
    put_varint(&mut f, 4096);
    let err = read_all(&f).unwrap_err();
    assert!(
        matches!(
            err,
            ContainerError::OutOfRange {
                what: "chunk token count",
                value: 4096,
                ..
            }
        ),
        "{err}"
    );

    // A payload longer than 8 bytes per token.
    let mut f = encode_header(&h);
    f.push(KIND_ARITHMETIC);
    put_varint(&mut f, 2);
    put_varint(&mut f, 2 * MAX_PAYLOAD_PER_TOKEN + MODEL_PAYLOAD_SLACK + 1);
    assert!(matches!(
        read_all(&f).unwrap_err(),
        ContainerError::OutOfRange { .. }
    ));

    // A huge stored chunk and a huge zstd claim.
    let mut f = encode_header(&h);
    f.push(KIND_STORED);
    put_varint(&mut f, MAX_RAW_CHUNK + 1);
    assert!(matches!(
        read_all(&f).unwrap_err(),
        ContainerError::OutOfRange { .. }
    ));
    let mut f = encode_header(&h);
    f.push(KIND_ZSTD);
    put_varint(&mut f, 1 << 40);
    assert!(matches!(
        read_all(&f).unwrap_err(),
        ContainerError::OutOfRange { .. }
    ));

    // A legal but unbacked length: truncation, not a giant allocation.
    let mut f = encode_header(&h);
    f.push(KIND_STORED);
    put_varint(&mut f, MAX_RAW_CHUNK);
    f.extend_from_slice(b"abc");
    assert!(matches!(
        read_all(&f).unwrap_err(),
        ContainerError::Truncated {
            what: "stored chunk",
            ..
        }
    ));

    // Unknown kind.
    let mut f = encode_header(&h);
    f.push(9);
    assert!(matches!(
        read_all(&f).unwrap_err(),
        ContainerError::ChunkKind { kind: 9, .. }
    ));
}

#[test]
fn garbage_is_rejected() {
    assert!(matches!(
        read_all(b"PK\x03\x04 zip").unwrap_err(),
        ContainerError::BadMagic { offset: 0 }
    ));
    assert!(matches!(
        read_all(b"LL").unwrap_err(),
        ContainerError::Truncated { .. }
    ));
    let mut f = sample_frame();
    f.extend_from_slice(b"xyzw");
    let err = read_all(&f).unwrap_err();
    assert!(
        matches!(err, ContainerError::BadMagic { offset } if offset as usize == sample_frame().len())
    );
}
