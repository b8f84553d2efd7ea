//! Reads a CTranslate2 model file (faster-whisper's `model.bin`) into
//! candle tensors under the names candle-transformers' Whisper expects.
//! Written here: no crate reads the format, and it is small: a version, the
//! spec's name, then named arrays (shape, dtype, bytes) and aliases. The
//! fused projections are split: self-attention's q/k/v, cross-attention's
//! k/v (Whisper's key projections have no bias; CTranslate2 stores zeros).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// The arrays of a model file by their CTranslate2 names (as f32).
pub fn read(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let mut r = Reader { b: bytes, at: 0 };
    let version = r.u32()?;
    if version != 6 {
        bail!("CTranslate2 model version {version}; this reader knows version 6");
    }
    let _spec = r.string()?;
    let _revision = r.u32()?;
    let n = r.u32()? as usize;
    let mut out = HashMap::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let shape: Vec<usize> = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<_>>()?;
        let dtype = r.u8()?;
        let len = r.u32()? as usize;
        let data = r.take(len)?;
        let count: usize = shape.iter().product::<usize>().max(1);
        let t = match dtype {
            // float32, float16
            0 if len == count * 4 => {
                let v: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?
            }
            4 if len == count * 2 => {
                let v: Vec<f32> = data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?
            }
            // int8, int16, int32 scalars (flags, head counts) are not weights
            1..=3 => continue,
            d => bail!("{name}: data type {d} with {len} bytes for shape {shape:?}"),
        };
        out.insert(name, t);
    }
    let aliases = r.u32()? as usize;
    for _ in 0..aliases {
        let (alias, target) = (r.string()?, r.string()?);
        if let Some(t) = out.get(&target).cloned() {
            out.insert(alias, t);
        }
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.context("the model file ends early")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A u16 length (with the terminating NUL), then the bytes.
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        Ok(String::from_utf8(b.to_vec())?)
    }
}

/// The tensors under candle-transformers' Whisper names (`model.encoder…`).
pub fn whisper_names(
    ct: &HashMap<String, Tensor>,
    layers: usize,
    d: usize,
) -> Result<HashMap<String, Tensor>> {
    let get = |k: &str| {
        ct.get(k)
            .cloned()
            .with_context(|| format!("{k} is missing"))
    };
    let mut m = HashMap::new();
    let mut put = |k: String, t: Tensor| {
        m.insert(k, t);
    };
    let ln = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| -> Result<()> {
        put(format!("{to}.weight"), get(&format!("{from}/gamma"))?);
        put(format!("{to}.bias"), get(&format!("{from}/beta"))?);
        Ok(())
    };
    let lin = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| -> Result<()> {
        put(format!("{to}.weight"), get(&format!("{from}/weight"))?);
        put(format!("{to}.bias"), get(&format!("{from}/bias"))?);
        Ok(())
    };
    // fused rows [q; k; v] (or [k; v]) into their own projections
    let split =
        |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str, names: &[&str]| -> Result<()> {
            let w = get(&format!("{from}/weight"))?;
            let b = get(&format!("{from}/bias"))?;
            for (i, n) in names.iter().enumerate() {
                put(
                    format!("{to}.{n}.weight"),
                    w.narrow(0, i * d, d)?.contiguous()?,
                );
                if *n != "k_proj" {
                    put(
                        format!("{to}.{n}.bias"),
                        b.narrow(0, i * d, d)?.contiguous()?,
                    );
                }
            }
            Ok(())
        };
    for w in ["conv1", "conv2"] {
        lin(
            &mut put,
            &format!("encoder/{w}"),
            &format!("model.encoder.{w}"),
        )?;
    }
    ln(&mut put, "encoder/layer_norm", "model.encoder.layer_norm")?;
    ln(&mut put, "decoder/layer_norm", "model.decoder.layer_norm")?;
    put(
        "model.decoder.embed_tokens.weight".into(),
        get("decoder/embeddings/weight")?,
    );
    put(
        "model.decoder.embed_positions.weight".into(),
        get("decoder/position_encodings/encodings")?,
    );
    for side in ["encoder", "decoder"] {
        for l in 0..layers {
            let from = format!("{side}/layer_{l}");
            let to = format!("model.{side}.layers.{l}");
            let sa = format!("{from}/self_attention");
            split(
                &mut put,
                &format!("{sa}/linear_0"),
                &format!("{to}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            lin(
                &mut put,
                &format!("{sa}/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            ln(
                &mut put,
                &format!("{sa}/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            if side == "decoder" {
                let ca = format!("{from}/attention");
                lin(
                    &mut put,
                    &format!("{ca}/linear_0"),
                    &format!("{to}.encoder_attn.q_proj"),
                )?;
                split(
                    &mut put,
                    &format!("{ca}/linear_1"),
                    &format!("{to}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                lin(
                    &mut put,
                    &format!("{ca}/linear_2"),
                    &format!("{to}.encoder_attn.out_proj"),
                )?;
                ln(
                    &mut put,
                    &format!("{ca}/layer_norm"),
                    &format!("{to}.encoder_attn_layer_norm"),
                )?;
            }
            lin(
                &mut put,
                &format!("{from}/ffn/linear_0"),
                &format!("{to}.fc1"),
            )?;
            lin(
                &mut put,
                &format!("{from}/ffn/linear_1"),
                &format!("{to}.fc2"),
            )?;
            ln(
                &mut put,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
        }
    }
    debug_assert!(m.values().all(|t| t.dtype() == DType::F32));
    Ok(m)
}
