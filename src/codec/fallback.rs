//! The classical coders a block falls back to when the model does not pay
//! (binary data, or text the model codes worse): zstd and raw LZMA2, the
//! smaller one per block (FORMAT.md section 8.5).

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream, PRESET_EXTREME};

/// Decompresses one zstd frame of exactly `original_len` bytes.
pub(super) fn unzstd(payload: &[u8], original_len: u64) -> Result<Vec<u8>, String> {
    // original_len <= MAX_RAW_CHUNK (checked by the reader): bounded.
    let out = zstd::bulk::decompress(payload, original_len as usize).map_err(|e| e.to_string())?;
    if out.len() as u64 != original_len {
        return Err(format!(
            "{} bytes decompressed, {original_len} declared",
            out.len()
        ));
    }
    Ok(out)
}

/// The LZMA2 dictionary for a block of `len` bytes: the next power of two
/// at or above it, at least 4 KiB (FORMAT.md 8.5). A dictionary as large as
/// the block finds every match a larger one would, and keeps the encoder's
/// and decoder's memory in proportion to the block.
pub(super) fn lzma2_dict(len: u64) -> u32 {
    len.max(4096).next_power_of_two().min(1 << 30) as u32
}

fn filters(len: u64) -> Result<Filters, String> {
    let mut opts = LzmaOptions::new_preset(9 | PRESET_EXTREME).map_err(|e| e.to_string())?;
    opts.dict_size(lzma2_dict(len));
    let mut f = Filters::new();
    f.lzma2(&opts);
    Ok(f)
}

/// `data` as one raw LZMA2 stream (preset 9e, dictionary [`lzma2_dict`]).
pub(super) fn lzma2(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = Stream::new_raw_encoder(&filters(data.len() as u64)?).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        out.reserve(out.len().max(4096));
        let before = s.total_in() as usize;
        let status = s
            .process_vec(&data[before..], &mut out, Action::Finish)
            .map_err(|e| e.to_string())?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

/// Decodes one raw LZMA2 stream of exactly `original_len` bytes; nothing is
/// allocated beyond that length and the dictionary.
pub(super) fn unlzma2(payload: &[u8], original_len: u64) -> Result<Vec<u8>, String> {
    let mut s = Stream::new_raw_decoder(&filters(original_len)?).map_err(|e| e.to_string())?;
    // One byte of room beyond the declared length shows a stream that is
    // longer than declared.
    let mut out = Vec::with_capacity(original_len as usize + 1);
    loop {
        let (before_in, before_out) = (s.total_in() as usize, out.len());
        let status = s
            .process_vec(&payload[before_in..], &mut out, Action::Finish)
            .map_err(|e| e.to_string())?;
        if out.len() as u64 > original_len {
            return Err(format!("more than the declared {original_len} bytes"));
        }
        if status == Status::StreamEnd {
            break;
        }
        if s.total_in() as usize == before_in && out.len() == before_out {
            return Err("truncated LZMA2 stream".into());
        }
    }
    if s.total_in() as usize != payload.len() {
        return Err("bytes after the end of the LZMA2 stream".into());
    }
    if out.len() as u64 != original_len {
        return Err(format!(
            "{} bytes decompressed, {original_len} declared",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzma2_round_trips_and_rejects_damage() {
        let data: Vec<u8> = (0..20000u32).map(|i| (i * i / 7 % 251) as u8).collect();
        let z = lzma2(&data).unwrap();
        assert!(z.len() < data.len() / 2);
        assert_eq!(unlzma2(&z, data.len() as u64).unwrap(), data);
        assert!(unlzma2(&z[..z.len() - 1], data.len() as u64).is_err());
        assert!(unlzma2(&z, data.len() as u64 - 1).is_err());
        assert!(unlzma2(&z, data.len() as u64 + 1).is_err());
        let mut extra = z.clone();
        extra.push(0);
        assert!(unlzma2(&extra, data.len() as u64).is_err());
        let empty = lzma2(b"x").unwrap();
        assert_eq!(unlzma2(&empty, 1).unwrap(), b"x");
    }
}
