//! GGUF: a bounded reader and a streaming writer.
//!
//! The reader trusts nothing in the file: every count and length is checked against
//! the bytes that remain before anything is allocated, so a corrupt or lying header
//! is a typed error, never a panic or a huge allocation. Format reference: the GGUF
//! specification in the ggml repository (`docs/gguf.md`), versions 2 and 3.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Default alignment of the tensor data section (`general.alignment` overrides it).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays inside arrays that the reader accepts.
const MAX_ARRAY_DEPTH: usize = 3;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: usize = 4;

/// A tensor storage type of the GGUF format (ggml's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, blocks of 32 with one f16 scale.
    Q4_0,
    /// 8-bit, blocks of 32 with one f16 scale.
    Q8_0,
    /// 4-bit k-quant, super-blocks of 256.
    Q4K,
    /// 5-bit k-quant, super-blocks of 256.
    Q5K,
    /// 6-bit k-quant, super-blocks of 256.
    Q6K,
}

impl TensorType {
    /// Every type taper loads and writes.
    pub const ALL: [TensorType; 8] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// The type's id in the file (ggml's enum value).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// The type for a file id, or `None` for a type taper does not load.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes needed for `elements` values, or `None` if `elements` is not a whole
    /// number of blocks or the size overflows.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !elements.is_multiple_of(bs) {
            return None;
        }
        (elements / bs).checked_mul(self.block_bytes() as u64)
    }

    /// The matching candle quantized type.
    pub fn to_candle(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType as G;
        match self {
            Self::F32 => G::F32,
            Self::F16 => G::F16,
            Self::BF16 => G::BF16,
            Self::Q4_0 => G::Q4_0,
            Self::Q8_0 => G::Q8_0,
            Self::Q4K => G::Q4K,
            Self::Q5K => G::Q5K,
            Self::Q6K => G::Q6K,
        }
    }

    /// The name llama.cpp prints for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `uint8`
    U8(u8),
    /// `int8`
    I8(i8),
    /// `uint16`
    U16(u16),
    /// `int16`
    I16(i16),
    /// `uint32`
    U32(u32),
    /// `int32`
    I32(i32),
    /// `float32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// `string` (UTF-8)
    String(String),
    /// `array` of values of one type
    Array(Vec<Value>),
    /// `uint64`
    U64(u64),
    /// `int64`
    I64(i64),
    /// `float64`
    F64(f64),
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order (the first is the fastest varying, i.e. the row length).
    pub dims: Vec<usize>,
    /// Storage type.
    pub kind: TensorType,
    /// Offset of the data from the start of the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// The shape in row-major order (candle's and PyTorch's), i.e. `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// The header of a GGUF file: metadata and tensor directory.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    /// The tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Offset of the tensor data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// Reads and validates the header of a file of `file_len` bytes from `reader`,
    /// which must be positioned at the start of the file.
    pub fn read<R: Read>(reader: R, file_len: u64) -> Result<Self> {
        let mut r = Bounded {
            inner: reader,
            pos: 0,
            len: file_len,
        };
        let magic = r.bytes_fixed::<4>()?;
        if &magic != MAGIC {
            return Err(r.err("not a GGUF file (bad magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.err(format!("unsupported GGUF version {version}")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, each
        // tensor info at least 8 + 4 + 4 + 8: reject counts the file cannot hold.
        r.check_count(n_kv, 13, "metadata entries")?;
        r.check_count(n_tensors, 24, "tensors")?;
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(r.err(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .map(|(_, v)| v)
        {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => return Err(r.err("general.alignment is not a power of two")),
            },
        };
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.err(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = r.u64()?;
                if d == 0 || d > file_len.saturating_mul(8) {
                    return Err(r.err(format!("tensor `{name}` has dimension {d}")));
                }
                dims.push(d as usize);
            }
            let type_id = r.u32()?;
            let offset = r.u64()?;
            raw.push((name, dims, type_id, offset));
        }
        let data_offset = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut names = HashMap::with_capacity(raw.len());
        for (name, dims, type_id, rel) in raw {
            let kind =
                TensorType::from_id(type_id).ok_or_else(|| Error::UnsupportedTensorType {
                    tensor: name.clone(),
                    kind: format!("id {type_id}"),
                })?;
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| r.err(format!("tensor `{name}` has too many elements")))?;
            if dims[0] % kind.block_size() != 0 {
                return Err(r.err(format!(
                    "tensor `{name}` rows of {} are not whole {kind} blocks",
                    dims[0]
                )));
            }
            let size = kind
                .bytes_for(elements)
                .ok_or_else(|| r.err(format!("tensor `{name}` size overflows")))?;
            if rel % alignment != 0 {
                return Err(r.err(format!("tensor `{name}` data is not aligned")));
            }
            let offset = data_offset
                .checked_add(rel)
                .filter(|o| o.checked_add(size).is_some_and(|end| end <= file_len))
                .ok_or_else(|| {
                    r.err(format!(
                        "tensor `{name}` data ({size} bytes at {rel}) runs past the end of the file"
                    ))
                })?;
            if names.insert(name.clone(), ()).is_some() {
                return Err(r.err(format!("duplicate tensor `{name}`")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                kind,
                offset,
                size,
            });
        }
        Ok(Self {
            version,
            metadata,
            index,
            tensors,
            data_offset,
        })
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A required string key.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.required(key)?
            .as_str()
            .ok_or_else(|| Error::key(key, "expected a string"))
    }

    /// A required unsigned integer key.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.required(key)?
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| Error::key(key, "expected a non-negative integer"))
    }

    /// A required numeric key.
    pub fn f64(&self, key: &str) -> Result<f64> {
        self.required(key)?
            .as_f64()
            .ok_or_else(|| Error::key(key, "expected a number"))
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.into()))
    }

    /// The tensor of that name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A reader that knows how many bytes the file has left and refuses lengths that
/// run past it.
struct Bounded<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Bounded<R> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_bytes) > self.remaining() {
            return Err(self.err(format!(
                "header claims {count} {what}, more than the file can hold"
            )));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining() {
            return Err(self.err("unexpected end of file"));
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| self.err(format!("read failed: {e}")))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn bytes_fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes_fixed()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes_fixed()?))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > self.remaining() {
            return Err(self.err(format!("string of {n} bytes runs past the end of the file")));
        }
        let mut b = vec![0u8; n as usize];
        self.fill(&mut b)?;
        String::from_utf8(b).map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes_fixed()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes_fixed()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes_fixed()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes_fixed()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes_fixed()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes_fixed()?)),
            7 => match self.bytes_fixed::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("bool value {b}"))),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.u64()?;
                let min = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(self.err(format!("unknown metadata type {t}"))),
                };
                self.check_count(n, min, "array elements")?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes_fixed()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes_fixed()?)),
            t => return Err(self.err(format!("unknown metadata type {t}"))),
        })
    }
}

/// A tensor to be written: its name, ggml-order dims and type.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    /// The tensor name.
    pub name: String,
    /// Dimensions in ggml order (row length first).
    pub dims: Vec<usize>,
    /// Storage type.
    pub kind: TensorType,
}

impl TensorSpec {
    /// The size of the tensor's data in bytes, or `None` if the rows are not whole blocks.
    pub fn size(&self) -> Option<u64> {
        if self
            .dims
            .first()
            .is_none_or(|d| d % self.kind.block_size() != 0)
        {
            return None;
        }
        self.kind
            .bytes_for(self.dims.iter().map(|&d| d as u64).product())
    }
}

/// Writes a GGUF v3 file: the header first, then each tensor's data as `fill`
/// produces it, so a file of any size is written with one tensor in memory.
///
/// `fill(i, buf)` must append exactly the bytes of tensor `i` to `buf` (which it
/// receives empty).
pub fn write<W: Write>(
    mut out: W,
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    mut fill: impl FnMut(usize, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Gguf {
        offset: 0,
        reason: format!("write failed: {e}"),
    };
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(DEFAULT_ALIGNMENT);
    let mut head = Vec::new();
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut head, k);
        head.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut head, v)?;
    }
    let mut offset = 0u64;
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        let size = t.size().ok_or_else(|| Error::Gguf {
            offset: 0,
            reason: format!("tensor `{}` rows are not whole {} blocks", t.name, t.kind),
        })?;
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for &d in &t.dims {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        head.extend_from_slice(&t.kind.id().to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        sizes.push(size);
        offset = (offset + size).div_ceil(alignment) * alignment;
    }
    pad(&mut head, alignment);
    out.write_all(&head).map_err(io)?;
    let mut buf = Vec::new();
    for (i, (t, &size)) in tensors.iter().zip(&sizes).enumerate() {
        buf.clear();
        fill(i, &mut buf)?;
        if buf.len() as u64 != size {
            return Err(Error::Gguf {
                offset: 0,
                reason: format!(
                    "tensor `{}` produced {} bytes, expected {size}",
                    t.name,
                    buf.len()
                ),
            });
        }
        pad(&mut buf, alignment);
        out.write_all(&buf).map_err(io)?;
    }
    out.flush().map_err(io)
}

fn pad(buf: &mut Vec<u8>, alignment: u64) {
    let len = buf.len() as u64;
    buf.resize((len.div_ceil(alignment) * alignment) as usize, 0);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::String(s) => put_str(buf, s),
        Value::Array(items) => {
            let elem_ty = items.first().map_or(4, Value::type_id);
            if items.iter().any(|i| i.type_id() != elem_ty) {
                return Err(Error::Gguf {
                    offset: 0,
                    reason: "array elements must all have one type".into(),
                });
            }
            buf.extend_from_slice(&elem_ty.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(buf, i)?;
            }
        }
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let meta = vec![
            (
                "general.architecture".to_string(),
                Value::String("llama".into()),
            ),
            ("llama.block_count".to_string(), Value::U32(2)),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
            ),
            ("x.f".to_string(), Value::F32(1.5)),
            ("x.b".to_string(), Value::Bool(true)),
        ];
        let tensors = vec![
            TensorSpec {
                name: "a".into(),
                dims: vec![32, 2],
                kind: TensorType::Q8_0,
            },
            TensorSpec {
                name: "b".into(),
                dims: vec![3],
                kind: TensorType::F32,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &meta, &tensors, |i, buf| {
            let n = tensors[i].size().expect("valid spec") as usize;
            buf.extend((0..n).map(|j| (j % 251) as u8));
            Ok(())
        })
        .expect("writing to a Vec cannot fail");
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.str("general.architecture").unwrap(), "llama");
        assert_eq!(h.usize("llama.block_count").unwrap(), 2);
        assert_eq!(h.f64("x.f").unwrap(), 1.5);
        assert_eq!(h.get("x.b"), Some(&Value::Bool(true)));
        assert_eq!(h.tensors.len(), 2);
        let a = h.tensor("a").unwrap();
        assert_eq!(
            (a.kind, a.size, a.shape()),
            (TensorType::Q8_0, 68, vec![2, 32])
        );
        assert_eq!(a.offset % DEFAULT_ALIGNMENT, 0);
        assert_eq!(bytes[a.offset as usize + 5], 5);
        let b = h.tensor("b").unwrap();
        assert_eq!(b.offset, a.offset + 96);
        assert!(matches!(h.usize("missing"), Err(Error::MissingKey(k)) if k == "missing"));
        assert!(matches!(h.usize("x.f"), Err(Error::InvalidKey { .. })));
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let bytes = sample();
        let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
        let data_end = h.tensors.iter().map(|t| t.offset + t.size).max().unwrap() as usize;
        // Past the last tensor's data there is only padding: every shorter cut loses
        // something the header promised.
        for cut in 0..data_end {
            let r = GgufHeader::read(&bytes[..cut], cut as u64);
            assert!(r.is_err(), "truncated at {cut} was accepted");
        }
    }

    #[test]
    fn lying_counts_are_rejected_without_allocating() {
        let mut bytes = sample();
        // tensor count = u64::MAX
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap_err();
        assert!(e.to_string().contains("more than the file can hold"), "{e}");
        let mut bytes = sample();
        // the first key's length = huge
        bytes[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }

    #[test]
    fn unsupported_tensor_type_names_the_tensor() {
        let mut bytes = sample();
        let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
        // Find the type id of tensor "b" (F32 = 0) just before its offset field.
        let needle =
            b"\x01\x00\x00\x00\x00\x00\x00\x00b\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[at + needle.len()..at + needle.len() + 4].copy_from_slice(&19u32.to_le_bytes());
        let e = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap_err();
        assert!(
            matches!(&e, Error::UnsupportedTensorType { tensor, .. } if tensor == "b"),
            "{e}"
        );
        assert_eq!(h.tensors.len(), 2);
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = sample();
        bytes[0] = b'X';
        assert!(GgufHeader::read(&bytes[..], bytes.len() as u64).is_err());
        let mut bytes = sample();
        bytes[4] = 9;
        let e = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Mutated headers never panic and never allocate by a lying length
        /// (a huge allocation would abort the test process).
        #[test]
        fn mutated_headers_never_panic(
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let mut bytes = sample();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            let cut = cut.min(bytes.len()).max(bytes.len() / 2);
            let _ = GgufHeader::read(&bytes[..cut], cut as u64);
            let _ = GgufHeader::read(&bytes[..], bytes.len() as u64);
        }

        /// Arbitrary bytes after a valid magic and version never panic.
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
            bytes.extend(body);
            let _ = GgufHeader::read(&bytes[..], bytes.len() as u64);
        }
    }
}
