//! Ogg Opus audio (RFC 7845), as Telegram's voice messages carry it: the Ogg
//! container read by the pure-Rust `ogg` crate, the Opus packets decoded by
//! libopus (the `opus` bindings, Debian's libopus-dev), straight to mono at
//! the recogniser's 16 kHz (Opus decodes at 8–48 kHz itself). The work is
//! bounded by the caller's limit: decoding stops past it.

use super::audio::Pcm;
use std::io::Cursor;

/// The rate the audio comes out at: Whisper's.
pub const RATE: u32 = 16_000;
/// Opus counts its pre-skip and granule positions at 48 kHz.
const OPUS_RATE: u64 = 48_000;
/// The longest Opus packet: 120 ms.
const MAX_PACKET_MS: u32 = 120;

/// Why the audio could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum OggError {
    /// Longer than the caller's limit (decoding stopped there).
    #[error("the audio is longer than {0} s")]
    TooLong(u32),
    #[error("not Ogg Opus audio: {0}")]
    Invalid(String),
}

fn invalid(e: impl std::fmt::Display) -> OggError {
    OggError::Invalid(e.to_string())
}

/// The OpusHead packet's fields that decoding needs.
struct Head {
    /// Samples at 48 kHz to drop at the start (the encoder's delay).
    pre_skip: u64,
    /// Q7.8 dB, applied by the decoder.
    gain: i16,
}

fn head(p: &[u8]) -> Result<Head, OggError> {
    if p.len() < 19 || &p[..8] != b"OpusHead" {
        return Err(invalid("no OpusHead"));
    }
    // Only the major version (the high nibble) must be 0.
    if p[8] >> 4 != 0 {
        return Err(invalid(format!("OpusHead version {}", p[8])));
    }
    let channels = p[9];
    let family = p[18];
    if channels == 0 {
        return Err(invalid("no channels"));
    }
    // Mapping family 0 is one stream of one or two channels; the others
    // carry a table, and a single decoder serves only one stream.
    if family != 0 && (p.len() < 21 + channels as usize || p[19] != 1) {
        return Err(invalid("more than one Opus stream"));
    }
    Ok(Head {
        pre_skip: u16::from_le_bytes([p[10], p[11]]) as u64,
        gain: i16::from_le_bytes([p[16], p[17]]),
    })
}

/// Ogg Opus `bytes` as 16 kHz mono (stereo is mixed down), the encoder's
/// delay dropped and the end trimmed as the last granule position says.
/// `TooLong` as soon as more than `max_seconds` have been decoded.
pub fn decode_ogg_opus(bytes: &[u8], max_seconds: u32) -> Result<Pcm, OggError> {
    let mut r = ogg::PacketReader::new(Cursor::new(bytes));
    let first = r.read_packet().map_err(invalid)?.ok_or(invalid("empty"))?;
    let serial = first.stream_serial();
    let h = head(&first.data)?;
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Mono).map_err(invalid)?;
    if h.gain != 0 {
        dec.set_gain(h.gain as i32).map_err(invalid)?;
    }
    let skip = (h.pre_skip * RATE as u64 / OPUS_RATE) as usize;
    let max = max_seconds as usize * RATE as usize;
    let mut samples: Vec<i16> = Vec::with_capacity((max + skip).min(RATE as usize * 10));
    let mut frame = vec![0i16; (RATE * MAX_PACKET_MS / 1000) as usize];
    let mut tags = false;
    let mut end = None;
    while let Some(p) = r.read_packet().map_err(invalid)? {
        // Another logical stream multiplexed in (RFC 7845 allows it): not ours.
        if p.stream_serial() != serial {
            continue;
        }
        if !tags {
            if !p.data.starts_with(b"OpusTags") {
                return Err(invalid("no OpusTags"));
            }
            tags = true;
            continue;
        }
        // An empty packet is a gap marker: nothing to decode.
        if !p.data.is_empty() {
            let n = dec.decode(&p.data, &mut frame, false).map_err(invalid)?;
            // (Room for the last packet's padding, trimmed below.)
            if samples.len() + n > skip + max + frame.len() {
                return Err(OggError::TooLong(max_seconds));
            }
            samples.extend_from_slice(&frame[..n]);
        }
        if p.last_in_stream() {
            end = Some(p.absgp_page());
            break;
        }
    }
    if !tags {
        return Err(invalid("no audio"));
    }
    // The last page's granule position is the end of the audio (at 48 kHz,
    // the pre-skip included): the last packet's padding goes.
    if let Some(g) = end.filter(|g| *g >= h.pre_skip && *g != u64::MAX) {
        let total = (g * RATE as u64 / OPUS_RATE) as usize;
        samples.truncate(total);
    }
    let samples = samples.get(skip..).unwrap_or_default().to_vec();
    if samples.len() > max {
        return Err(OggError::TooLong(max_seconds));
    }
    Ok(Pcm {
        rate: RATE,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ogg Opus as an encoder writes it (opusenc, Telegram's clients):
    /// OpusHead, OpusTags, then 20 ms packets, the granule position at 48 kHz
    /// counting the pre-skip; the last page's granule trims the last packet.
    fn ogg_opus(rate: u32, channels: u8, interleaved: &[i16], gain: i16) -> Vec<u8> {
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut enc = opus::Encoder::new(rate, ch, opus::Application::Voip).unwrap();
        let per_frame = (rate / 50) as usize * channels as usize;
        // The encoder's delay: the decoder drops it at the start, so the
        // input is padded by as much at the end (as opusenc does).
        let lookahead = enc.get_lookahead().unwrap() as usize;
        let pre_skip = (lookahead as u64 * 48_000 / rate as u64) as u16;
        let mut input = interleaved.to_vec();
        input.resize(input.len() + lookahead * channels as usize, 0);
        let mut head = b"OpusHead".to_vec();
        head.extend([1, channels]);
        head.extend(pre_skip.to_le_bytes());
        head.extend(rate.to_le_bytes());
        head.extend(gain.to_le_bytes());
        head.push(0);
        let mut tags = b"OpusTags".to_vec();
        tags.extend(4u32.to_le_bytes());
        tags.extend(b"test");
        tags.extend(0u32.to_le_bytes());
        let mut out = Vec::new();
        {
            let mut w = ogg::PacketWriter::new(&mut out);
            let serial = 0x0715;
            w.write_packet(head, serial, ogg::PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            w.write_packet(tags, serial, ogg::PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            let frames: Vec<&[i16]> = input.chunks(per_frame).collect();
            let total = interleaved.len() as u64 / channels as u64 * 48_000 / rate as u64;
            let mut granule = pre_skip as u64;
            for (i, f) in frames.iter().enumerate() {
                let mut pcm = f.to_vec();
                pcm.resize(per_frame, 0);
                let packet = enc.encode_vec(&pcm, 4000).unwrap();
                granule += 960;
                let last = i + 1 == frames.len();
                let (info, g) = if last {
                    (ogg::PacketWriteEndInfo::EndStream, pre_skip as u64 + total)
                } else if i % 10 == 9 {
                    (ogg::PacketWriteEndInfo::EndPage, granule)
                } else {
                    (ogg::PacketWriteEndInfo::NormalPacket, granule)
                };
                w.write_packet(packet, serial, info, g).unwrap();
            }
        }
        out
    }

    fn sine(rate: u32, freq: f32, ms: u32, amp: f32) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| {
                ((2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * amp) as i16
            })
            .collect()
    }

    /// The strongest of some candidate frequencies in `s` (16 kHz).
    fn loudest(s: &[i16], candidates: &[f32]) -> f32 {
        let power = |f: f32| {
            let (mut re, mut im) = (0f64, 0f64);
            for (i, &x) in s.iter().enumerate() {
                let a = 2.0 * std::f64::consts::PI * f as f64 * i as f64 / RATE as f64;
                re += x as f64 * a.cos();
                im += x as f64 * a.sin();
            }
            re * re + im * im
        };
        *candidates
            .iter()
            .max_by(|a, b| power(**a).total_cmp(&power(**b)))
            .unwrap()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn a_voice_message_decodes_to_its_length_and_tone() {
        let tone = sine(48_000, 440.0, 1500, 8000.0);
        let pcm = decode_ogg_opus(&ogg_opus(48_000, 1, &tone, 0), 10).unwrap();
        assert_eq!(pcm.rate, 16_000);
        // The pre-skip dropped, the padding of the last packet trimmed.
        assert_eq!(pcm.samples.len(), 24_000, "1.5 s at 16 kHz");
        let middle = &pcm.samples[4000..20_000];
        assert_eq!(loudest(middle, &[220.0, 440.0, 880.0, 1000.0]), 440.0);
        let level = rms(middle);
        assert!((4000.0..7000.0).contains(&level), "{level}");
    }

    #[test]
    fn stereo_is_mixed_down_and_the_header_gain_applied() {
        // Left 300 Hz, right 500 Hz: both are heard in the mono mix.
        let (l, r) = (
            sine(48_000, 300.0, 1000, 6000.0),
            sine(48_000, 500.0, 1000, 6000.0),
        );
        let both: Vec<i16> = l.iter().zip(&r).flat_map(|(a, b)| [*a, *b]).collect();
        let pcm = decode_ogg_opus(&ogg_opus(48_000, 2, &both, 0), 10).unwrap();
        assert_eq!(pcm.samples.len(), 16_000);
        let mid = &pcm.samples[2000..14_000];
        let top = loudest(mid, &[300.0, 500.0, 700.0]);
        assert!(top == 300.0 || top == 500.0, "{top}");
        // −6 dB in the header (Q7.8): half the amplitude.
        let tone = sine(48_000, 440.0, 1000, 8000.0);
        let plain = rms(&decode_ogg_opus(&ogg_opus(48_000, 1, &tone, 0), 10)
            .unwrap()
            .samples[2000..14_000]);
        let quiet = rms(&decode_ogg_opus(&ogg_opus(48_000, 1, &tone, -6 * 256), 10)
            .unwrap()
            .samples[2000..14_000]);
        let ratio = quiet / plain;
        assert!((0.4..0.6).contains(&ratio), "{ratio}");
    }

    #[test]
    fn decoding_stops_past_the_limit() {
        let tone = sine(48_000, 440.0, 3000, 8000.0);
        let bytes = ogg_opus(48_000, 1, &tone, 0);
        assert!(matches!(
            decode_ogg_opus(&bytes, 2),
            Err(OggError::TooLong(2))
        ));
        assert_eq!(decode_ogg_opus(&bytes, 3).unwrap().samples.len(), 48_000);
    }

    #[test]
    fn what_is_not_ogg_opus_is_refused() {
        let tone = sine(48_000, 440.0, 500, 8000.0);
        let good = ogg_opus(48_000, 1, &tone, 0);
        for (what, bytes) in [
            ("empty", Vec::new()),
            ("text", b"hello, this is not audio".to_vec()),
            ("cut in the header", good[..20].to_vec()),
            (
                "a WAV",
                super::super::audio::write_wav(&Pcm {
                    rate: 16_000,
                    samples: tone.clone(),
                }),
            ),
        ] {
            assert!(
                matches!(decode_ogg_opus(&bytes, 10), Err(OggError::Invalid(_))),
                "{what}"
            );
        }
        // Ogg carrying something else (Vorbis's identification header).
        let mut other = Vec::new();
        {
            let mut w = ogg::PacketWriter::new(&mut other);
            w.write_packet(
                b"\x01vorbis\0\0\0\0\x01\x44\xac\0\0".to_vec(),
                1,
                ogg::PacketWriteEndInfo::EndStream,
                0,
            )
            .unwrap();
        }
        assert!(matches!(
            decode_ogg_opus(&other, 10),
            Err(OggError::Invalid(_))
        ));
        // A corrupted page fails its checksum.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x55;
        assert!(matches!(
            decode_ogg_opus(&bad, 10),
            Err(OggError::Invalid(_))
        ));
    }
}
