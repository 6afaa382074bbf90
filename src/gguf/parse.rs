//! Parsing a GGUF file: header, metadata, tensor infos, each checked
//! against the caps of the parent module before anything is allocated
//! for it.

use std::collections::HashMap;

use super::value::{min_encoded_size, type_id};
use super::{
    GgmlType, GgufError, TensorInfo, Value, DEFAULT_ALIGNMENT, MAX_ALIGNMENT, MAX_ARRAY_DEPTH,
    MAX_ARRAY_LEN, MAX_DIMS, MAX_KV, MAX_STRING_LEN, MAX_TENSORS, MAX_TOTAL_ARRAY_ELEMENTS,
};

/// What [`parse`] finds in a file.
pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) metadata: Vec<(String, Value)>,
    pub(super) key_index: HashMap<String, usize>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) tensor_index: HashMap<String, usize>,
    pub(super) alignment: u64,
    pub(super) data_start: u64,
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array elements read so far (against MAX_TOTAL_ARRAY_ELEMENTS).
    array_elements: u64,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what,
                offset: self.offset(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes.
    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::TooLarge {
                what: "string length",
                value: len,
                max: MAX_STRING_LEN,
            });
        }
        let at = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::InvalidUtf8 { what, offset: at }),
        }
    }

    /// A metadata value of type `ty`. `depth` is the number of arrays this
    /// value is inside.
    fn value(&mut self, ty: u32, type_offset: u64, depth: u32) -> Result<Value, GgufError> {
        const W: &str = "metadata value";
        Ok(match ty {
            type_id::U8 => Value::U8(self.u8(W)?),
            type_id::I8 => Value::I8(i8::from_le_bytes(self.array(W)?)),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.array(W)?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.array(W)?)),
            type_id::U32 => Value::U32(self.u32(W)?),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.array(W)?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.array(W)?)),
            type_id::U64 => Value::U64(self.u64(W)?),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.array(W)?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.array(W)?)),
            type_id::BOOL => {
                let at = self.offset();
                match self.u8(W)? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    value => return Err(GgufError::InvalidBool { value, offset: at }),
                }
            }
            type_id::STRING => Value::String(self.string("metadata string")?),
            type_id::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        offset: type_offset,
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                let elem_offset = self.offset();
                let elem_ty = self.u32("metadata array header")?;
                let min = min_encoded_size(elem_ty).ok_or(GgufError::InvalidValueType {
                    type_id: elem_ty,
                    offset: elem_offset,
                })?;
                let n = self.u64("metadata array header")?;
                if n > MAX_ARRAY_LEN {
                    return Err(GgufError::TooLarge {
                        what: "array length",
                        value: n,
                        max: MAX_ARRAY_LEN,
                    });
                }
                self.array_elements += n;
                if self.array_elements > MAX_TOTAL_ARRAY_ELEMENTS {
                    return Err(GgufError::TooLarge {
                        what: "total number of metadata array elements",
                        value: self.array_elements,
                        max: MAX_TOTAL_ARRAY_ELEMENTS,
                    });
                }
                // Never reserve more elements than the rest of the file
                // could encode; a lying count then fails as Truncated.
                let cap = n.min(self.remaining() / min) as usize;
                let mut items = Vec::with_capacity(cap);
                for _ in 0..n {
                    items.push(self.value(elem_ty, elem_offset, depth + 1)?);
                }
                Value::Array(items)
            }
            _ => {
                return Err(GgufError::InvalidValueType {
                    type_id: ty,
                    offset: type_offset,
                })
            }
        })
    }
}

/// Parses and checks a whole GGUF file held in `buf`.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut r = Reader {
        buf,
        pos: 0,
        array_elements: 0,
    };
    let (version, n_tensors, n_kv) = header(&mut r)?;
    let (metadata, key_index) = metadata(&mut r, n_kv)?;
    let alignment = alignment(&metadata, &key_index)?;
    let (tensors, tensor_index) = tensor_infos(&mut r, n_tensors, alignment)?;
    // The data section starts at the next multiple of the alignment. (It may
    // lie past the end of a file without tensors.)
    let data_start = r.offset().div_ceil(alignment) * alignment;
    check_bounds(&tensors, data_start, buf.len() as u64)?;
    Ok(Parsed {
        version,
        metadata,
        key_index,
        tensors,
        tensor_index,
        alignment,
        data_start,
    })
}

/// Magic, version and the two counts: `(version, n_tensors, n_kv)`.
fn header(r: &mut Reader<'_>) -> Result<(u32, u64, u64), GgufError> {
    let magic: [u8; 4] = r.array("header")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = r.u32("header")?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = r.u64("header")?;
    let n_kv = r.u64("header")?;
    if n_tensors > MAX_TENSORS {
        return Err(GgufError::TooLarge {
            what: "tensor count",
            value: n_tensors,
            max: MAX_TENSORS,
        });
    }
    if n_kv > MAX_KV {
        return Err(GgufError::TooLarge {
            what: "metadata key/value count",
            value: n_kv,
            max: MAX_KV,
        });
    }
    Ok((version, n_tensors, n_kv))
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

/// The `n_kv` metadata pairs, in file order, with an index by key.
fn metadata(r: &mut Reader<'_>, n_kv: u64) -> Result<Metadata, GgufError> {
    // A key/value pair takes at least 8 + 4 + 1 bytes.
    let mut metadata = Vec::with_capacity(n_kv.min(r.remaining() / 13) as usize);
    let mut key_index = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let ty_offset = r.offset();
        let ty = r.u32("metadata value type")?;
        let value = r.value(ty, ty_offset, 0)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(key));
        }
        metadata.push((key, value));
    }
    Ok((metadata, key_index))
}

/// `general.alignment` if present (a power of two up to [`MAX_ALIGNMENT`]),
/// else [`DEFAULT_ALIGNMENT`].
fn alignment(
    metadata: &[(String, Value)],
    key_index: &HashMap<String, usize>,
) -> Result<u64, GgufError> {
    let Some(&i) = key_index.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let v = &metadata[i].1;
    let a = v.as_i128().ok_or_else(|| GgufError::WrongType {
        key: "general.alignment".to_string(),
        expected: "u32",
        found: v.type_name(),
    })?;
    if a < 1 || a > i128::from(MAX_ALIGNMENT) || (a & (a - 1)) != 0 {
        return Err(GgufError::BadAlignment(
            u64::try_from(a).unwrap_or(u64::MAX),
        ));
    }
    Ok(a as u64)
}

type Tensors = (Vec<TensorInfo>, HashMap<String, usize>);

/// The `n_tensors` tensor infos, each checked on its own, with an index by name.
fn tensor_infos(r: &mut Reader<'_>, n_tensors: u64, alignment: u64) -> Result<Tensors, GgufError> {
    // One takes at least 8 + 4 + 8 + 4 + 8 bytes.
    let mut infos = Vec::with_capacity(n_tensors.min(r.remaining() / 32) as usize);
    let mut tensor_index = HashMap::new();
    for _ in 0..n_tensors {
        let info = tensor_info(r, alignment)?;
        if tensor_index
            .insert(info.name.clone(), infos.len())
            .is_some()
        {
            return Err(GgufError::DuplicateTensor(info.name));
        }
        infos.push(info);
    }
    Ok((infos, tensor_index))
}

/// One tensor info: name, dimensions, type and offset.
fn tensor_info(r: &mut Reader<'_>, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = r.string("tensor info")?;
    let n_dims = r.u32("tensor info")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            tensor: name,
            n_dims,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for index in 0..n_dims as usize {
        let d = r.u64("tensor info")?;
        if d == 0 || d > i64::MAX as u64 {
            return Err(GgufError::BadDim {
                tensor: name,
                index,
                value: d,
            });
        }
        dims.push(d);
    }
    let type_id = r.u32("tensor info")?;
    let offset = r.u64("tensor info")?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType {
            tensor: name,
            type_id,
        });
    };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    if n_elements.is_none() {
        return Err(GgufError::ElementCountOverflow { tensor: name });
    }
    if dims[0] % u64::from(ggml_type.block_size()) != 0 {
        return Err(GgufError::NotBlockAligned {
            tensor: name,
            ggml_type,
            dim0: dims[0],
            block_size: ggml_type.block_size(),
        });
    }
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        ggml_type,
        dims,
        offset,
    })
}

/// Every tensor's bytes lie within the file.
fn check_bounds(infos: &[TensorInfo], data_start: u64, file_len: u64) -> Result<(), GgufError> {
    for info in infos {
        // n_elements fits and is whole blocks (checked above), but the byte
        // size of a huge tensor can still overflow.
        let n_bytes = info.ggml_type.bytes_for(info.n_elements());
        let start = data_start.checked_add(info.offset);
        let end = match (start, n_bytes) {
            (Some(s), Some(n)) => s.checked_add(n),
            _ => None,
        };
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: info.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    Ok(())
}
