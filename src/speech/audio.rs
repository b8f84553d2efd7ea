//! Audio for speech in and out: WAV files (hound), resampling (rubato's FFT
//! resampler), 20 ms framing, and loudness for voice-activity detection.

use anyhow::{bail, Context, Result};

/// Mono 16-bit samples at a rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    pub fn duration_ms(&self) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        self.samples.len() as u64 * 1000 / self.rate as u64
    }
}

/// Largest WAV accepted from a synthesiser: 10 minutes of 48 kHz audio.
pub const MAX_WAV_BYTES: usize = 60 * 1024 * 1024;

/// A WAV file's audio, mixed down to mono 16-bit.
pub fn read_wav(bytes: &[u8]) -> Result<Pcm> {
    if bytes.len() > MAX_WAV_BYTES {
        bail!("the audio is larger than {} MiB", MAX_WAV_BYTES >> 20);
    }
    let bytes = streamed_sizes(bytes);
    let mut r =
        hound::WavReader::new(std::io::Cursor::new(&bytes[..])).context("not a WAV file")?;
    let spec = r.spec();
    let ch = spec.channels.max(1) as usize;
    let mono: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample.clamp(8, 32) - 1)) as f32;
            let s: Vec<f32> = r
                .samples::<i32>()
                .map(|x| x.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()?;
            downmix(&s, ch)
        }
        hound::SampleFormat::Float => {
            let s: Vec<f32> = r.samples::<f32>().collect::<Result<_, _>>()?;
            downmix(&s, ch)
        }
    };
    Ok(Pcm {
        rate: spec.sample_rate,
        samples: mono.iter().map(|&v| to_i16(v)).collect(),
    })
}

/// A WAV written to a pipe (festival's `-o -`, many synthesisers) cannot
/// seek back to fill in its sizes, so it says 0 (or 0xFFFFFFFF): they are
/// set from the bytes that came, where the data chunk runs to the end.
fn streamed_sizes(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return bytes.into();
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let rest = bytes.len() - at - 8;
        if id == b"data" {
            if len == 0 || len > rest {
                let mut b = bytes.to_vec();
                b[at + 4..at + 8].copy_from_slice(&(rest as u32).to_le_bytes());
                b[4..8].copy_from_slice(&((bytes.len() - 8) as u32).to_le_bytes());
                return b.into();
            }
            break;
        }
        at += 8 + len + (len & 1);
    }
    bytes.into()
}

/// The audio as a 16-bit mono WAV file.
pub fn write_wav(pcm: &Pcm) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: pcm.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut out, spec).expect("in-memory WAV");
        for &s in &pcm.samples {
            w.write_sample(s).expect("in-memory WAV");
        }
        w.finalize().expect("in-memory WAV");
    }
    out.into_inner()
}

fn downmix(s: &[f32], ch: usize) -> Vec<f32> {
    if ch == 1 {
        return s.to_vec();
    }
    s.chunks(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect()
}

fn to_i16(v: f32) -> i16 {
    (v.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16
}

/// The audio at another rate (band-limited, so 16 or 22 kHz synthesis does
/// not alias on an 8 kHz call).
pub fn resample(pcm: &Pcm, rate: u32) -> Result<Pcm> {
    use rubato::{FftFixedIn, Resampler};
    if pcm.rate == rate || pcm.samples.is_empty() {
        return Ok(Pcm {
            rate,
            samples: pcm.samples.clone(),
        });
    }
    if pcm.rate == 0 || rate == 0 {
        bail!("a sample rate of 0");
    }
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(pcm.rate as usize, rate as usize, chunk, 2, 1)?;
    let delay = r.output_delay();
    let want = (pcm.samples.len() as u64 * rate as u64 / pcm.rate as u64) as usize;
    let mut input: Vec<f32> = pcm.samples.iter().map(|&s| s as f32 / 32768.0).collect();
    // Zeros after the end flush the resampler's delay line.
    let padded = input.len().div_ceil(chunk) * chunk + chunk * 2;
    input.resize(padded, 0.0);
    let mut out = Vec::with_capacity(want + delay + chunk);
    for c in input.chunks(chunk) {
        let y = r.process(&[c], None)?;
        out.extend_from_slice(&y[0]);
    }
    let end = (delay + want).min(out.len());
    Ok(Pcm {
        rate,
        samples: out[delay.min(end)..end]
            .iter()
            .map(|&v| to_i16(v))
            .collect(),
    })
}

/// Samples in one 20 ms frame at `rate`.
pub fn frame_len(rate: u32) -> usize {
    (rate / 50) as usize
}

/// The audio cut into 20 ms frames, the last padded with silence.
pub fn frames(samples: &[i16], rate: u32) -> Vec<Vec<i16>> {
    let n = frame_len(rate);
    samples
        .chunks(n)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(n, 0);
            f
        })
        .collect()
}

/// The frame's loudness in dBFS (−96 for digital silence).
pub fn level_db(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -96.0;
    }
    let e: f64 = samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64;
    let rms = e.sqrt() / 32768.0;
    if rms <= 1e-5 {
        -96.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f32, ms: u32) -> Pcm {
        Pcm {
            rate,
            samples: (0..rate * ms / 1000)
                .map(|i| {
                    ((2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 16000.0)
                        as i16
                })
                .collect(),
        }
    }

    #[test]
    fn resampling_keeps_length_and_tone_and_removes_what_does_not_fit() {
        let s = sine(22050, 440.0, 500);
        let r = resample(&s, 8000).unwrap();
        assert_eq!(r.samples.len(), 4000);
        // the 440 Hz tone is still there at about the same level
        assert!((level_db(&r.samples[400..3600]) - level_db(&s.samples)).abs() < 1.0);
        // 6 kHz cannot exist at 8 kHz: it is filtered, not folded to 2 kHz
        let hi = resample(&sine(22050, 6000.0, 500), 8000).unwrap();
        assert!(
            level_db(&hi.samples[400..3600]) < -40.0,
            "{}",
            level_db(&hi.samples)
        );
    }

    #[test]
    fn wav_round_trip_and_frames() {
        let s = sine(16000, 300.0, 105);
        let back = read_wav(&write_wav(&s)).unwrap();
        assert_eq!(back.rate, 16000);
        assert!(back
            .samples
            .iter()
            .zip(&s.samples)
            .all(|(a, b)| (a - b).abs() <= 1));
        let f = frames(&s.samples, 16000);
        assert_eq!(f.len(), 6);
        assert!(f.iter().all(|f| f.len() == 320));
        assert!(read_wav(b"RIFF....not a wav").is_err());
        // as written to a pipe: data size 0
        let mut piped = write_wav(&s);
        piped[40..44].copy_from_slice(&[0, 0, 0, 0]);
        piped[4..8].copy_from_slice(&[0x24, 0, 0, 0]);
        assert_eq!(read_wav(&piped).unwrap().samples.len(), s.samples.len());
        assert_eq!(level_db(&[0; 160]), -96.0);
    }
}
