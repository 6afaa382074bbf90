//! Any bytes given to the GGUF reader must give Ok or Err, never a panic,
//! hang or huge allocation; whatever it accepts must be safe to use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmc::gguf::Gguf;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, _) in g.metadata() {
        let _ = g.get_u32(key);
        let _ = g.get_u64(key);
        let _ = g.get_f32(key);
        let _ = g.get_str(key);
        let _ = g.get_str_array(key);
        let _ = g.get_i32_array(key);
        let _ = g.get_f32_array(key);
    }
    for info in g.tensors() {
        let t = g.tensor(&info.name).expect("listed tensor is present");
        assert_eq!(t.data.len() as u64, info.n_bytes());
        assert!(g.data_start() + info.offset + info.n_bytes() <= g.file_len());
    }
    let _ = g.fingerprint();
});
