//! Tensors: named, typed, shaped bytes.

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::dtype::{DataType, Element};
use crate::error::{Error, Result};

/// A named tensor: data type, shape, and its elements as little-endian, row-major bytes.
///
/// The data is a [`Bytes`], so clones, batch splits and views share one buffer. `BYTES`
/// tensors hold each element as a 4-byte little-endian length followed by its bytes,
/// exactly as the Open Inference Protocol's binary extension carries them.
///
/// ```
/// use mlops_core::Tensor;
///
/// let x = Tensor::from_vec("x", vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// assert_eq!(x.as_slice::<f32>()?[4], 5.0);
///
/// let batch = Tensor::concat_batch(&[x.clone(), x])?;
/// assert_eq!(batch.shape(), &[4, 3]);
/// let parts = batch.split_batch(&[1, 3])?;
/// assert_eq!(parts[1].shape(), &[3, 3]);
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor {
    name: String,
    dtype: DataType,
    shape: Vec<usize>,
    data: Bytes,
}

impl Tensor {
    /// A tensor over existing bytes. The length must match the shape: `elements × size`
    /// for fixed-size types, exactly `elements` length-prefixed items for `BYTES`.
    pub fn new(
        name: impl Into<String>,
        dtype: DataType,
        shape: Vec<usize>,
        data: Bytes,
    ) -> Result<Self> {
        let name = name.into();
        let count = element_count(&name, &shape)?;
        match dtype.size() {
            Some(size) => {
                let expected = count
                    .checked_mul(size)
                    .ok_or_else(|| Error::tensor(&name, format!("shape {shape:?} is too large")))?;
                if data.len() != expected {
                    return Err(Error::tensor(
                        &name,
                        format!(
                            "data holds {} bytes but shape {shape:?} of {dtype} needs {expected}",
                            data.len()
                        ),
                    ));
                }
            }
            None => {
                bytes_offsets(&name, &data, count)?;
            }
        }
        Ok(Tensor {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// A tensor that takes ownership of a vector of elements. On little-endian machines no
    /// byte is copied, and the buffer keeps the alignment of `T`, so
    /// [`as_slice`](Self::as_slice) always succeeds on it.
    pub fn from_vec<T: Element>(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: Vec<T>,
    ) -> Result<Self> {
        #[cfg(target_endian = "little")]
        let data = Bytes::from_owner(LittleEndianVec(values));
        #[cfg(not(target_endian = "little"))]
        let data = {
            let mut out = Vec::with_capacity(values.len() * size_of::<T>());
            for v in values {
                v.extend_le(&mut out);
            }
            Bytes::from(out)
        };
        Tensor::new(name, T::DTYPE, shape, data)
    }

    /// A tensor that copies a slice of elements.
    pub fn from_slice<T: Element>(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[T],
    ) -> Result<Self> {
        Tensor::from_vec(name, shape, values.to_vec())
    }

    /// A `BOOL` tensor, one byte (0 or 1) per element.
    pub fn from_bools(name: impl Into<String>, shape: Vec<usize>, values: &[bool]) -> Result<Self> {
        let data: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::new(name, DataType::Bool, shape, Bytes::from(data))
    }

    /// A `BYTES` tensor from its elements (strings or raw byte strings).
    pub fn from_byte_strings<S: AsRef<[u8]>>(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[S],
    ) -> Result<Self> {
        let name = name.into();
        let total: usize = values.iter().map(|v| 4 + v.as_ref().len()).sum();
        let mut data = Vec::with_capacity(total);
        for v in values {
            let v = v.as_ref();
            let len = u32::try_from(v.len()).map_err(|_| {
                Error::tensor(&name, "a BYTES element is longer than 4 GiB - 1 bytes")
            })?;
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(v);
        }
        Tensor::new(name, DataType::Bytes, shape, Bytes::from(data))
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same tensor under another name (the data is shared, not copied).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The raw little-endian, row-major bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Takes the tensor apart: name, data type, shape and data.
    pub fn into_parts(self) -> (String, DataType, Vec<usize>, Bytes) {
        (self.name, self.dtype, self.shape, self.data)
    }

    /// The number of elements (the product of the shape; 1 for a scalar).
    pub fn element_count(&self) -> usize {
        // Checked when the tensor was built.
        self.shape.iter().product()
    }

    /// A borrowed view of the elements, without copying. Fails when `T` is not this
    /// tensor's type, on big-endian machines, or when the bytes are not aligned for `T`
    /// (possible for data sliced out of a larger buffer): [`values`](Self::values) then
    /// copies instead.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.expect_type::<T>()?;
        if cfg!(target_endian = "big") {
            return Err(Error::tensor(
                &self.name,
                "zero-copy views need a little-endian machine; use to_vec",
            ));
        }
        bytemuck::try_cast_slice(&self.data).map_err(|_| {
            Error::tensor(
                &self.name,
                format!(
                    "data is not aligned to {} bytes for a zero-copy {} view; use values or to_vec",
                    align_of::<T>(),
                    T::DTYPE
                ),
            )
        })
    }

    /// The elements as a slice: borrowed when [`as_slice`](Self::as_slice) can be, copied
    /// otherwise.
    pub fn values<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        match self.as_slice::<T>() {
            Ok(slice) => Ok(Cow::Borrowed(slice)),
            Err(_) => self.to_vec().map(Cow::Owned),
        }
    }

    /// The elements, copied into a vector.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.expect_type::<T>()?;
        Ok(self
            .data
            .chunks_exact(size_of::<T>())
            .map(T::from_le)
            .collect())
    }

    /// The elements of any numeric or `BOOL` tensor as `f64`, for comparing outputs
    /// across models whatever their types (64-bit integers beyond 2^53 round).
    pub fn to_f64(&self) -> Result<Vec<f64>> {
        fn conv<T: Element>(t: &Tensor, f: impl Fn(T) -> f64) -> Result<Vec<f64>> {
            Ok(t.to_vec::<T>()?.into_iter().map(f).collect())
        }
        match self.dtype {
            DataType::Bool => Ok(self
                .data
                .iter()
                .map(|&b| f64::from(u8::from(b != 0)))
                .collect()),
            DataType::Uint8 => conv(self, |v: u8| f64::from(v)),
            DataType::Uint16 => conv(self, |v: u16| f64::from(v)),
            DataType::Uint32 => conv(self, |v: u32| f64::from(v)),
            DataType::Uint64 => conv(self, |v: u64| v as f64),
            DataType::Int8 => conv(self, |v: i8| f64::from(v)),
            DataType::Int16 => conv(self, |v: i16| f64::from(v)),
            DataType::Int32 => conv(self, |v: i32| f64::from(v)),
            DataType::Int64 => conv(self, |v: i64| v as f64),
            DataType::Fp16 => conv(self, |v: half::f16| v.to_f64()),
            DataType::Bf16 => conv(self, |v: half::bf16| v.to_f64()),
            DataType::Fp32 => conv(self, |v: f32| f64::from(v)),
            DataType::Fp64 => conv(self, |v: f64| v),
            DataType::Bytes => Err(self.wrong_type("a numeric type")),
        }
    }

    /// The elements of a `BOOL` tensor.
    pub fn to_bools(&self) -> Result<Vec<bool>> {
        if self.dtype != DataType::Bool {
            return Err(self.wrong_type("BOOL"));
        }
        Ok(self.data.iter().map(|&b| b != 0).collect())
    }

    /// The elements of a `BYTES` tensor, each borrowed from the buffer.
    pub fn byte_strings(&self) -> Result<Vec<&[u8]>> {
        if self.dtype != DataType::Bytes {
            return Err(self.wrong_type("BYTES"));
        }
        let offsets = bytes_offsets(&self.name, &self.data, self.element_count())?;
        Ok(offsets
            .windows(2)
            .map(|w| &self.data[w[0] + 4..w[1]])
            .collect())
    }

    /// Stacks tensors along their first (batch) dimension into one, allocating the result
    /// once. All parts need the same data type, a rank of at least one, and the same
    /// dimensions after the first. The result takes the first part's name.
    ///
    /// A single part is returned as it is, without a copy.
    pub fn concat_batch(parts: &[Tensor]) -> Result<Tensor> {
        let Some(first) = parts.first() else {
            return Err(Error::tensor(
                "",
                "cannot concatenate an empty list of tensors",
            ));
        };
        if first.shape.is_empty() {
            return Err(Error::tensor(
                &first.name,
                "a scalar has no batch dimension to concatenate along",
            ));
        }
        if parts.len() == 1 {
            return Ok(first.clone());
        }
        let mut rows = 0usize;
        let mut bytes = 0usize;
        for part in parts {
            if part.dtype != first.dtype {
                return Err(Error::tensor(
                    &part.name,
                    format!(
                        "cannot concatenate {} with {} along the batch dimension",
                        part.dtype, first.dtype
                    ),
                ));
            }
            if part.shape.len() != first.shape.len() || part.shape[1..] != first.shape[1..] {
                return Err(Error::tensor(
                    &part.name,
                    format!(
                        "shape {:?} does not stack with {:?}: dimensions after the first must match",
                        part.shape, first.shape
                    ),
                ));
            }
            rows = rows.checked_add(part.shape[0]).ok_or_else(|| {
                Error::tensor(&part.name, "the batch dimension overflows when stacked")
            })?;
            // The parts' buffers exist, so their lengths add up within memory.
            bytes += part.data.len();
        }
        let mut data = BytesMut::with_capacity(bytes);
        for part in parts {
            data.extend_from_slice(&part.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Ok(Tensor {
            name: first.name.clone(),
            dtype: first.dtype,
            shape,
            data: data.freeze(),
        })
    }

    /// Splits along the first (batch) dimension into parts of the given sizes, which must
    /// add up to that dimension. The parts share this tensor's buffer: nothing is copied.
    pub fn split_batch(&self, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&rows) = self.shape.first() else {
            return Err(Error::tensor(
                &self.name,
                "a scalar has no batch dimension to split",
            ));
        };
        let total = sizes
            .iter()
            .try_fold(0usize, |acc, &s| acc.checked_add(s))
            .filter(|&t| t == rows)
            .ok_or_else(|| {
                Error::tensor(
                    &self.name,
                    format!("split sizes {sizes:?} do not add up to the batch dimension {rows}"),
                )
            })?;
        // Checked: a shape with a zero dimension is valid whatever its other dimensions.
        let row_elements = element_count(&self.name, &self.shape[1..])?;
        let boundaries: Vec<usize> = match self.dtype.size() {
            Some(size) => {
                let row_bytes = row_elements.checked_mul(size).ok_or_else(|| {
                    Error::tensor(&self.name, format!("shape {:?} is too large", self.shape))
                })?;
                let mut at = 0;
                std::iter::once(0)
                    .chain(sizes.iter().map(|&s| {
                        at += s * row_bytes;
                        at
                    }))
                    .collect()
            }
            None => {
                let offsets = bytes_offsets(&self.name, &self.data, total * row_elements)?;
                let mut row = 0;
                std::iter::once(0)
                    .chain(sizes.iter().map(|&s| {
                        row += s;
                        offsets[row * row_elements]
                    }))
                    .collect()
            }
        };
        Ok(sizes
            .iter()
            .zip(boundaries.windows(2))
            .map(|(&rows, range)| {
                let mut shape = self.shape.clone();
                shape[0] = rows;
                Tensor {
                    name: self.name.clone(),
                    dtype: self.dtype,
                    shape,
                    data: self.data.slice(range[0]..range[1]),
                }
            })
            .collect())
    }

    fn expect_type<T: Element>(&self) -> Result<()> {
        if self.dtype == T::DTYPE {
            Ok(())
        } else {
            Err(self.wrong_type(T::DTYPE.as_str()))
        }
    }

    fn wrong_type(&self, asked: &str) -> Error {
        Error::tensor(
            &self.name,
            format!("holds {} elements, not {asked}", self.dtype),
        )
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Lends a vector of elements to [`Bytes`] as its little-endian bytes.
#[cfg(target_endian = "little")]
struct LittleEndianVec<T>(Vec<T>);

#[cfg(target_endian = "little")]
impl<T: Element> AsRef<[u8]> for LittleEndianVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

fn element_count(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::tensor(name, format!("shape {shape:?} is too large")))
}

/// The byte offset where each of `count` length-prefixed elements starts, plus the end.
/// Fails unless the elements fill `data` exactly.
fn bytes_offsets(name: &str, data: &[u8], count: usize) -> Result<Vec<usize>> {
    // Each element takes at least 4 bytes, which bounds a hostile `count`.
    let mut offsets = Vec::with_capacity(count.min(data.len() / 4) + 1);
    let mut at = 0usize;
    for index in 0..count {
        offsets.push(at);
        let Some(prefix) = data.get(at..at + 4) else {
            return Err(Error::tensor(
                name,
                format!(
                    "BYTES data ends at byte {} inside element {index} of {count}",
                    data.len()
                ),
            ));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        at = at + 4 + len;
        if at > data.len() {
            return Err(Error::tensor(
                name,
                format!(
                    "BYTES element {index} announces {len} bytes, past the end of the data ({} bytes)",
                    data.len()
                ),
            ));
        }
    }
    if at != data.len() {
        return Err(Error::tensor(
            name,
            format!(
                "BYTES data has {} bytes after its {count} elements",
                data.len() - at
            ),
        ));
    }
    offsets.push(at);
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_must_match_shape_and_type() {
        let err = Tensor::new("x", DataType::Fp32, vec![2, 4], Bytes::from(vec![0u8; 12]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "tensor 'x': data holds 12 bytes but shape [2, 4] of FP32 needs 32"
        );
        let huge = Tensor::new("x", DataType::Fp32, vec![usize::MAX, 2], Bytes::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            huge,
            format!("tensor 'x': shape [{}, 2] is too large", usize::MAX)
        );
        let scalar = Tensor::from_vec("s", vec![], vec![7i64]).unwrap();
        assert_eq!(scalar.element_count(), 1);
        assert_eq!(scalar.to_vec::<i64>().unwrap(), vec![7]);
    }

    #[test]
    fn typed_views_are_zero_copy_and_checked() {
        let t = Tensor::from_vec("x", vec![3], vec![1.5f32, -2.0, 3.25]).unwrap();
        let view = t.as_slice::<f32>().unwrap();
        assert_eq!(view, &[1.5, -2.0, 3.25]);
        assert_eq!(view.as_ptr().cast::<u8>(), t.data().as_ptr());
        assert_eq!(t.data()[..4], 1.5f32.to_le_bytes());
        assert_eq!(
            t.as_slice::<f64>().unwrap_err().to_string(),
            "tensor 'x': holds FP32 elements, not FP64"
        );
    }

    #[test]
    fn misaligned_data_falls_back_to_a_copy() {
        let mut raw = vec![0u8; 16];
        // An offset that is not 4-aligned, whatever alignment the allocator gave.
        let start = (1..4)
            .find(|o| !(raw.as_ptr() as usize + o).is_multiple_of(4))
            .unwrap();
        raw[start..start + 4].copy_from_slice(&1.0f32.to_le_bytes());
        raw[start + 4..start + 8].copy_from_slice(&2.0f32.to_le_bytes());
        let whole = Bytes::from(raw);
        let t = Tensor::new("x", DataType::Fp32, vec![2], whole.slice(start..start + 8)).unwrap();
        assert!(!(t.data().as_ptr() as usize).is_multiple_of(4));
        assert_eq!(
            t.as_slice::<f32>().unwrap_err().to_string(),
            "tensor 'x': data is not aligned to 4 bytes for a zero-copy FP32 view; use values or to_vec"
        );
        let values = t.values::<f32>().unwrap();
        assert!(matches!(values, Cow::Owned(_)));
        assert_eq!(values.as_ref(), &[1.0, 2.0]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn half_precision_and_bools() {
        let h = Tensor::from_vec(
            "h",
            vec![2],
            vec![half::f16::from_f32(0.5), half::f16::from_f32(-1.0)],
        )
        .unwrap();
        assert_eq!(h.dtype(), DataType::Fp16);
        assert_eq!(h.to_vec::<half::f16>().unwrap()[1].to_f32(), -1.0);
        let b = Tensor::from_bools("b", vec![3], &[true, false, true]).unwrap();
        assert_eq!(b.to_bools().unwrap(), vec![true, false, true]);
        assert_eq!(b.data().as_ref(), &[1, 0, 1]);
    }

    #[test]
    fn byte_strings_round_trip_and_reject_bad_lengths() {
        let t = Tensor::from_byte_strings("s", vec![3], &["ab", "", "xyz"]).unwrap();
        assert_eq!(
            t.byte_strings().unwrap(),
            vec![b"ab".as_slice(), b"", b"xyz"]
        );
        assert_eq!(t.data().len(), 4 * 3 + 5);
        let short = Tensor::new(
            "s",
            DataType::Bytes,
            vec![1],
            Bytes::from_static(&[9, 0, 0, 0, 1]),
        );
        assert_eq!(
            short.unwrap_err().to_string(),
            "tensor 's': BYTES element 0 announces 9 bytes, past the end of the data (5 bytes)"
        );
        let extra = Tensor::new("s", DataType::Bytes, vec![0], Bytes::from_static(&[0]));
        assert_eq!(
            extra.unwrap_err().to_string(),
            "tensor 's': BYTES data has 1 bytes after its 0 elements"
        );
    }

    #[test]
    fn concat_then_split_returns_each_request_its_rows() {
        let a = Tensor::from_vec("x", vec![1, 2], vec![1i32, 2]).unwrap();
        let b = Tensor::from_vec("x", vec![3, 2], vec![3i32, 4, 5, 6, 7, 8]).unwrap();
        let c = Tensor::from_vec("x", vec![2, 2], vec![9i32, 10, 11, 12]).unwrap();
        let batch = Tensor::concat_batch(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(batch.shape(), &[6, 2]);
        assert_eq!(
            batch.to_vec::<i32>().unwrap(),
            (1..=12).collect::<Vec<i32>>()
        );
        let parts = batch.split_batch(&[1, 3, 2]).unwrap();
        assert_eq!(parts, vec![a, b, c]);
        // The parts are views into the batch, not copies.
        assert_eq!(parts[1].data().as_ptr(), batch.data()[8..].as_ptr());
    }

    #[test]
    fn concat_and_split_bytes_tensors() {
        let a = Tensor::from_byte_strings("s", vec![2, 1], &["a", "bb"]).unwrap();
        let b = Tensor::from_byte_strings("s", vec![1, 1], &["ccc"]).unwrap();
        let batch = Tensor::concat_batch(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            batch.byte_strings().unwrap(),
            vec![b"a".as_slice(), b"bb", b"ccc"]
        );
        assert_eq!(batch.split_batch(&[2, 1]).unwrap(), vec![a, b]);
    }

    #[test]
    fn concat_and_split_refuse_what_does_not_fit() {
        let a = Tensor::from_vec("x", vec![1, 2], vec![1f32, 2.0]).unwrap();
        let wide = Tensor::from_vec("x", vec![1, 3], vec![1f32, 2.0, 3.0]).unwrap();
        let ints = Tensor::from_vec("x", vec![1, 2], vec![1i32, 2]).unwrap();
        assert_eq!(
            Tensor::concat_batch(&[a.clone(), wide])
                .unwrap_err()
                .to_string(),
            "tensor 'x': shape [1, 3] does not stack with [1, 2]: dimensions after the first must match"
        );
        assert_eq!(
            Tensor::concat_batch(&[a.clone(), ints])
                .unwrap_err()
                .to_string(),
            "tensor 'x': cannot concatenate INT32 with FP32 along the batch dimension"
        );
        assert_eq!(
            a.split_batch(&[1, 1]).unwrap_err().to_string(),
            "tensor 'x': split sizes [1, 1] do not add up to the batch dimension 1"
        );
        assert_eq!(
            a.split_batch(&[usize::MAX, 2]).unwrap_err().to_string(),
            format!(
                "tensor 'x': split sizes [{}, 2] do not add up to the batch dimension 1",
                usize::MAX
            )
        );
        // Empty tensors may have any other dimensions; stacking or splitting them must not
        // overflow.
        let wide_empty =
            Tensor::new("e", DataType::Fp32, vec![usize::MAX, 0], Bytes::new()).unwrap();
        assert_eq!(
            Tensor::concat_batch(&[wide_empty.clone(), wide_empty])
                .unwrap_err()
                .to_string(),
            "tensor 'e': the batch dimension overflows when stacked"
        );
        let deep_empty =
            Tensor::new("e", DataType::Fp32, vec![0, usize::MAX, 2], Bytes::new()).unwrap();
        assert_eq!(
            deep_empty.split_batch(&[0]).unwrap_err().to_string(),
            format!("tensor 'e': shape [{}, 2] is too large", usize::MAX)
        );
        let single = Tensor::concat_batch(std::slice::from_ref(&a)).unwrap();
        assert_eq!(single.data().as_ptr(), a.data().as_ptr());
    }
}
