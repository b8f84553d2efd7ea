//! In-band DTMF: a Goertzel detector over the caller's audio, so the keypad
//! works where the tones reach the robot as sound (an old Asterisk, a
//! trunk that does not signal RFC 4733 events). Written here: no Rust crate
//! detects DTMF; the Goertzel filter is a dozen lines.
//!
//! A key counts when its row and column tones hold most of the energy of two
//! blocks in a row (about 50 ms; the standard asks for 40 ms), each tone
//! clearly stronger than the others of its group and within 8 dB of each
//! other; the same key counts again only after a block without it.

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

pub struct Detector {
    rate: u32,
    /// Samples per block: 205 at 8 kHz (25.6 ms), scaled for other rates.
    block: usize,
    buf: Vec<f32>,
    /// The key seen in the last block, and whether it was reported.
    last: Option<char>,
    reported: bool,
}

impl Detector {
    pub fn new(rate: u32) -> Self {
        let block = (205 * rate as usize / 8000).max(64);
        Self {
            rate,
            block,
            buf: Vec::with_capacity(block),
            last: None,
            reported: false,
        }
    }

    /// Feeds samples; returns the keys that began in them.
    pub fn feed(&mut self, samples: &[i16]) -> Vec<char> {
        let mut out = Vec::new();
        for &s in samples {
            self.buf.push(s as f32);
            if self.buf.len() == self.block {
                let key = self.block_key();
                self.buf.clear();
                match key {
                    Some(k) if self.last == Some(k) => {
                        if !self.reported {
                            self.reported = true;
                            out.push(k);
                        }
                    }
                    k => {
                        self.last = k;
                        self.reported = false;
                    }
                }
            }
        }
        out
    }

    /// A gap in the audio (no frames while the caller is silent) ends a tone.
    pub fn gap(&mut self) {
        self.buf.clear();
        self.last = None;
        self.reported = false;
    }

    fn block_key(&self) -> Option<char> {
        let n = self.buf.len() as f32;
        let energy: f32 = self.buf.iter().map(|x| x * x).sum();
        // Quieter than an RMS of 150 (about −47 dBFS): no key.
        if energy < 150.0 * 150.0 * n {
            return None;
        }
        let power = |f: f32| goertzel(&self.buf, f, self.rate as f32) * 2.0 / n;
        let rows: Vec<f32> = ROWS.iter().map(|&f| power(f)).collect();
        let cols: Vec<f32> = COLS.iter().map(|&f| power(f)).collect();
        let (r, pr) = strongest(&rows)?;
        let (c, pc) = strongest(&cols)?;
        let twist = pr / pc;
        if (pr + pc) < 0.6 * energy || !(1.0 / 6.3..=6.3).contains(&twist) {
            return None;
        }
        Some(KEYS[r][c])
    }
}

/// The index and power of the strongest tone, if it is at least 6 dB above
/// every other of its group.
fn strongest(p: &[f32]) -> Option<(usize, f32)> {
    let (i, &best) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let clear = p
        .iter()
        .enumerate()
        .all(|(j, &q)| j == i || q * 4.0 <= best);
    clear.then_some((i, best))
}

/// The squared magnitude of the signal's component at `freq`.
fn goertzel(x: &[f32], freq: f32, rate: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// A key's tone pair (for the simulated caller and the tests).
pub fn tone(key: char, rate: u32, ms: u32, amplitude: f32) -> Vec<i16> {
    let (r, c) = KEYS
        .iter()
        .enumerate()
        .find_map(|(r, row)| row.iter().position(|&k| k == key).map(|c| (r, c)))
        .unwrap_or((3, 1));
    let n = (rate * ms / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let v = (2.0 * std::f32::consts::PI * ROWS[r] * t).sin()
                + (2.0 * std::f32::consts::PI * COLS[c] * t).sin();
            (v * amplitude / 2.0 * i16::MAX as f32) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(rate: u32, audio: &[i16]) -> String {
        let mut d = Detector::new(rate);
        // in 20 ms frames, as they come from Asterisk
        audio
            .chunks(rate as usize / 50)
            .flat_map(|f| d.feed(f))
            .collect()
    }

    #[test]
    fn every_key_is_heard_once_at_any_level_and_rate() {
        for rate in [8000, 16000] {
            for amp in [0.05, 0.3, 0.9] {
                let mut audio = Vec::new();
                for k in "0123456789*#ABCD".chars() {
                    audio.extend(tone(k, rate, 80, amp));
                    audio.extend(vec![0i16; rate as usize / 20]);
                }
                assert_eq!(detect(rate, &audio), "0123456789*#ABCD", "{rate} Hz, {amp}");
            }
        }
    }

    #[test]
    fn a_held_key_counts_once_and_a_repeated_one_twice() {
        let mut audio = tone('5', 8000, 600, 0.3);
        assert_eq!(detect(8000, &audio), "5");
        audio.extend(vec![0i16; 400]);
        audio.extend(tone('5', 8000, 80, 0.3));
        assert_eq!(detect(8000, &audio), "55");
    }

    #[test]
    fn noise_and_single_tones_are_no_keys() {
        let mut seed = 12345u32;
        let noise: Vec<i16> = (0..16000)
            .map(|_| {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                ((seed >> 16) as i16) / 4
            })
            .collect();
        assert_eq!(detect(8000, &noise), "");
        let one: Vec<i16> = (0..8000)
            .map(|i| {
                ((2.0 * std::f32::consts::PI * 770.0 * i as f32 / 8000.0).sin() * 8000.0) as i16
            })
            .collect();
        assert_eq!(detect(8000, &one), "");
    }
}
