//! GGUF reader over a memory map.
//!
//! GGUF (versions 2 and 3, little-endian) is laid out as:
//!
//! ```text
//! header       magic "GGUF", version u32, tensor_count u64, kv_count u64
//! metadata     kv_count x (key: string, value_type: u32, value)
//! tensor infos tensor_count x (name: string, n_dims: u32, dims: n_dims x u64,
//!                              ggml_type: u32, offset: u64)
//! padding      to general.alignment (default 32)
//! data         tensor bytes; each tensor at data_start + offset
//! ```
//!
//! with `string = u64 length + UTF-8 bytes` and
//! `array = element type u32 + count u64 + elements`.
//!
//! The file is untrusted input: every count and length is capped (see the
//! `MAX_*` constants), no allocation is larger than what the rest of the file
//! could encode, every read is bounds-checked, and every tensor's data range
//! is checked to lie inside the file when the file is opened. Any malformed
//! input gives a [`GgufError`], never a panic.
//!
//! Tensor dimensions are in ggml order: `dims[0]` is the contiguous
//! (fastest-varying) one, so a weight matrix with `dims = [576, 49152]` has
//! 49152 rows of 576 elements.

mod error;
mod parse;
mod types;
mod value;

pub use error::GgufError;
pub use types::{bf16_to_f32, f16_to_f32, GgmlType};
pub use value::Value;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;
use value::type_id_name;

/// At most this many tensors.
pub const MAX_TENSORS: u64 = 65536;
/// At most this many metadata key/value pairs.
pub const MAX_KV: u64 = 65536;
/// Longest string (key, value or tensor name), in bytes.
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Longest metadata array, in elements.
pub const MAX_ARRAY_LEN: u64 = 16 << 20;
/// Most metadata values in all arrays together. A parsed [`Value`] takes 32
/// bytes however small its encoding, so this caps the metadata's memory at
/// about 512 MiB whatever the file says (real models need ~1M, for the
/// tokenizer's tokens, scores, types and merges).
pub const MAX_TOTAL_ARRAY_ELEMENTS: u64 = 16 << 20;
/// Arrays may contain arrays, but no deeper.
pub const MAX_ARRAY_DEPTH: u32 = 2;
/// Tensors have 1 to this many dimensions.
pub const MAX_DIMS: u32 = 4;
/// Largest accepted `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Where the tensor info of one tensor says its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ggml order: `dims[0]` is contiguous. 1 to 4 entries, each >= 1.
    pub dims: Vec<u64>,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Product of the dimensions (checked not to overflow at open time).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the tensor's data in bytes.
    pub fn n_bytes(&self) -> u64 {
        // Checked at open time: whole blocks, no overflow.
        self.ggml_type.bytes_for(self.n_elements()).unwrap_or(0)
    }
}

/// A tensor with its data, borrowed from the mapped file.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub ggml_type: GgmlType,
    /// ggml order: `dims[0]` is contiguous.
    pub dims: &'a [u64],
    /// Exactly `n_bytes()` bytes of block data. No alignment is promised
    /// beyond what the file's alignment and the map's base give.
    pub data: &'a [u8],
}

impl Tensor<'_> {
    /// Product of the dimensions.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of `dims[1..]`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

enum Backing {
    Map(memmap2::Mmap),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Bytes(v) => v,
        }
    }
}

/// An open, validated GGUF file.
pub struct Gguf {
    backing: Backing,
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
    fingerprint: OnceLock<[u8; 32]>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("file_len", &self.file_len())
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl Gguf {
    /// Map and validate the file at `path`.
    ///
    /// The file is memory-mapped: it must not be modified while the `Gguf`
    /// is alive (the usual condition of every mmap-based reader; a model file
    /// in a cache is only ever replaced by rename, which is safe).
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Gguf::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only and private to this process; the
        // documented precondition is that nobody truncates or rewrites the
        // file in place while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Gguf::from_backing(Backing::Map(map))
    }

    /// Validate an in-memory GGUF image (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::from_backing(Backing::Bytes(bytes))
    }

    fn from_backing(backing: Backing) -> Result<Gguf, GgufError> {
        let p = parse::parse(backing.bytes())?;
        Ok(Gguf {
            backing,
            version: p.version,
            metadata: p.metadata,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            alignment: p.alignment,
            data_start: p.data_start,
            fingerprint: OnceLock::new(),
        })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// The data alignment in force (`general.alignment` or 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section (tensor offsets are relative to it).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    /// An integer value that fits in `u32`, whatever its stored integer type.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        int_as(key, self.require(key)?, "u32")
    }

    /// An integer value that fits in `u64`, whatever its stored integer type.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        int_as(key, self.require(key)?, "u64")
    }

    /// An integer value that fits in `i32`, whatever its stored integer type.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        int_as(key, self.require(key)?, "i32")
    }

    /// An `f32` value (an `f64` is accepted if it converts exactly).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        float_as(key, self.require(key)?)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(wrong_type(key, "bool", v.type_name())),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(wrong_type(key, "string", v.type_name())),
        }
    }

    /// Any array value.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(wrong_type(key, "array", v.type_name())),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(wrong_type(key, "array of string", array_of(v))),
            })
            .collect()
    }

    /// An array of integers that each fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                if v.as_i128().is_none() {
                    return Err(wrong_type(key, "array of i32", array_of(v)));
                }
                int_as(key, v, "i32")
            })
            .collect()
    }

    /// An array of integers that each fit in `u32`.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                if v.as_i128().is_none() {
                    return Err(wrong_type(key, "array of u32", array_of(v)));
                }
                int_as(key, v, "u32")
            })
            .collect()
    }

    /// An array of `f32` (exactly convertible `f64` accepted).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::F32(_) | Value::F64(_) => float_as(key, v),
                v => Err(wrong_type(key, "array of f32", array_of(v))),
            })
            .collect()
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor info of `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor `name` with its data.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        Ok(self.tensor_of(info))
    }

    fn tensor_of<'a>(&'a self, info: &'a TensorInfo) -> Tensor<'a> {
        // Ranges were checked against the file length in `parse`.
        let start = (self.data_start + info.offset) as usize;
        let end = start + info.n_bytes() as usize;
        Tensor {
            name: &info.name,
            ggml_type: info.ggml_type,
            dims: &info.dims,
            data: &self.backing.bytes()[start..end],
        }
    }

    /// SHA-256 identity of the model: what determines the probabilities a
    /// model computes (its tensors and its tokenizer), not incidental
    /// metadata (names, licences) nor the file layout (padding, alignment,
    /// tensor offsets, metadata order).
    ///
    /// Computed once, on first call (it hashes every tensor byte). The exact
    /// byte stream hashed, all integers little-endian:
    ///
    /// ```text
    /// b"llmc-gguf-fingerprint-v1\n"                    (25 bytes)
    /// u64 number of tensors
    /// for each tensor, in file order:
    ///     u64 name length, name bytes (UTF-8)
    ///     u32 ggml type id
    ///     u32 number of dims, then each dim as u64 (ggml order)
    ///     u64 data length in bytes, then the data bytes
    /// u64 number of metadata keys that `fingerprint_covers` (all but
    ///     `general.*` and `tokenizer.chat_template`: hyperparameters such as
    ///     RoPE base and RMSNorm epsilon change the probabilities too)
    /// for each such key, in ascending bytewise order of the key:
    ///     u64 key length, key bytes
    ///     value
    /// value := u32 GGUF value type id, then
    ///     u8/i8/u16/i16/u32/i32/u64/i64: the integer in its own width
    ///     f32/f64: the IEEE bits in their own width (NaN payloads kept)
    ///     bool: one byte, 0 or 1
    ///     string: u64 length, bytes
    ///     array: u64 element count, then each element as a value
    ///            (each with its own type id)
    /// ```
    pub fn fingerprint(&self) -> [u8; 32] {
        *self.fingerprint.get_or_init(|| self.compute_fingerprint())
    }

    fn compute_fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"llmc-gguf-fingerprint-v1\n");
        h.update((self.tensors.len() as u64).to_le_bytes());
        for info in &self.tensors {
            let t = self.tensor_of(info);
            h.update((t.name.len() as u64).to_le_bytes());
            h.update(t.name.as_bytes());
            h.update(t.ggml_type.id().to_le_bytes());
            h.update((t.dims.len() as u32).to_le_bytes());
            for d in t.dims {
                h.update(d.to_le_bytes());
            }
            h.update((t.data.len() as u64).to_le_bytes());
            h.update(t.data);
        }
        let mut tok: Vec<&(String, Value)> = self
            .metadata
            .iter()
            .filter(|(k, _)| fingerprint_covers(k))
            .collect();
        tok.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        h.update((tok.len() as u64).to_le_bytes());
        for (k, v) in tok {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            hash_value(&mut h, v);
        }
        h.finalize().into()
    }
}

/// Whether a metadata key is part of the model's fingerprint: everything that
/// can change what the model computes. Names, licences and the chat template
/// (`general.*`, `tokenizer.chat_template`) are left out, so renaming a model
/// does not orphan the files compressed with it.
pub fn fingerprint_covers(key: &str) -> bool {
    !key.starts_with("general.") && key != "tokenizer.chat_template"
}

fn hash_value(h: &mut Sha256, v: &Value) {
    h.update(v.type_id().to_le_bytes());
    match v {
        Value::U8(x) => h.update([*x]),
        Value::I8(x) => h.update(x.to_le_bytes()),
        Value::U16(x) => h.update(x.to_le_bytes()),
        Value::I16(x) => h.update(x.to_le_bytes()),
        Value::U32(x) => h.update(x.to_le_bytes()),
        Value::I32(x) => h.update(x.to_le_bytes()),
        Value::F32(x) => h.update(x.to_bits().to_le_bytes()),
        Value::Bool(x) => h.update([u8::from(*x)]),
        Value::String(s) => {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update((a.len() as u64).to_le_bytes());
            for e in a {
                hash_value(h, e);
            }
        }
        Value::U64(x) => h.update(x.to_le_bytes()),
        Value::I64(x) => h.update(x.to_le_bytes()),
        Value::F64(x) => h.update(x.to_bits().to_le_bytes()),
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &'static str) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found,
    }
}

fn array_of(elem: &Value) -> &'static str {
    match elem {
        Value::U8(_) => "array of u8",
        Value::I8(_) => "array of i8",
        Value::U16(_) => "array of u16",
        Value::I16(_) => "array of i16",
        Value::U32(_) => "array of u32",
        Value::I32(_) => "array of i32",
        Value::F32(_) => "array of f32",
        Value::Bool(_) => "array of bool",
        Value::String(_) => "array of string",
        Value::Array(_) => "array of array",
        Value::U64(_) => "array of u64",
        Value::I64(_) => "array of i64",
        Value::F64(_) => "array of f64",
    }
}

/// Integer conversion with a range check. `T` is one of u32, u64, i32.
fn int_as<T: TryFrom<i128>>(key: &str, v: &Value, expected: &'static str) -> Result<T, GgufError> {
    let x = v
        .as_i128()
        .ok_or_else(|| wrong_type(key, expected, v.type_name()))?;
    T::try_from(x).map_err(|_| GgufError::OutOfRange {
        key: key.to_string(),
        value: x.to_string(),
        expected,
    })
}

fn float_as(key: &str, v: &Value) -> Result<f32, GgufError> {
    match *v {
        Value::F32(x) => Ok(x),
        Value::F64(x) => {
            let y = x as f32;
            // Exact round trip (NaN of any payload accepted as NaN).
            if f64::from(y).to_bits() == x.to_bits() || (x.is_nan() && y.is_nan()) {
                Ok(y)
            } else {
                Err(GgufError::OutOfRange {
                    key: key.to_string(),
                    value: x.to_string(),
                    expected: "f32",
                })
            }
        }
        _ => Err(wrong_type(key, "f32", v.type_name())),
    }
}

/// Name of a GGUF metadata value type id (`"u32"`, `"string"`, ...;
/// `"invalid"` for unknown ids).
pub fn value_type_name(type_id: u32) -> &'static str {
    type_id_name(type_id)
}

#[cfg(test)]
mod tests;
