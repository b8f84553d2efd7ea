//! Asterisk's AudioSocket wire protocol: a message is a kind byte, a
//! big-endian u16 payload length and the payload. Kinds: 0x00 hangup, 0x01
//! the call's UUID (16 bytes), 0x03 a DTMF digit (one ASCII byte), 0x10–0x18
//! signed-linear 16-bit little-endian mono audio at 8, 12, 16, 24, 32, 44.1,
//! 48, 96 or 192 kHz, 0xff an error (an optional code). Written here: the
//! protocol is three bytes of header, and no Rust crate implements it.
//!
//! Asterisk itself accepts only audio and hangup messages from the server
//! (anything else ends its side of the call), so `Message::Dtmf`, `Uuid` and
//! `Error` are read, never sent, by the robot; the simulated Asterisk of the
//! tests sends them.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const HANGUP: u8 = 0x00;
pub const UUID: u8 = 0x01;
pub const DTMF: u8 = 0x03;
pub const AUDIO_8K: u8 = 0x10;
pub const ERROR: u8 = 0xff;

/// The sample rates of the audio kinds 0x10..=0x18, in order.
const RATES: [u32; 9] = [
    8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000,
];

/// The audio kind byte for a sample rate, if AudioSocket has one.
pub fn audio_kind(rate: u32) -> Option<u8> {
    RATES
        .iter()
        .position(|&r| r == rate)
        .map(|i| AUDIO_8K + i as u8)
}

/// The sample rate of an audio kind byte.
pub fn kind_rate(kind: u8) -> Option<u32> {
    kind.checked_sub(AUDIO_8K)
        .and_then(|i| RATES.get(i as usize).copied())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hangup,
    /// The call's id, as Asterisk's `${UUID}` or `Dial(AudioSocket/…/uuid)`.
    Uuid([u8; 16]),
    /// One keypad digit: 0-9, *, #, A-D.
    Dtmf(char),
    /// Samples at `rate` Hz.
    Audio {
        rate: u32,
        samples: Vec<i16>,
    },
    /// Asterisk's error codes: 1 hangup, 2 frame forwarding, 4 memory.
    Error(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("a {what} message of {len} bytes")]
    BadLength { what: &'static str, len: usize },
}

/// The UUID in its usual hyphenated form.
pub fn uuid_string(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A hyphenated (or plain hex) UUID as 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let b = hex::decode(h).ok()?;
    b.try_into().ok()
}

/// Reads one message; `Ok(None)` when the peer closed the connection
/// between messages (a hangup by closing, which the protocol allows).
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Message>, ProtocolError> {
    let mut head = [0u8; 3];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut head[1..]).await?;
    let kind = head[0];
    let len = u16::from_be_bytes([head[1], head[2]]) as usize;
    // At most 64 KiB by the header's width: the bound on one read.
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let m = match kind {
        HANGUP => Message::Hangup,
        UUID => Message::Uuid(
            payload
                .as_slice()
                .try_into()
                .map_err(|_| ProtocolError::BadLength { what: "UUID", len })?,
        ),
        DTMF => match payload.as_slice() {
            [d] if is_dtmf(*d as char) => Message::Dtmf(*d as char),
            _ => return Err(ProtocolError::BadLength { what: "DTMF", len }),
        },
        ERROR => Message::Error(payload),
        k => match kind_rate(k) {
            Some(rate) => {
                if !len.is_multiple_of(2) {
                    return Err(ProtocolError::BadLength { what: "audio", len });
                }
                let samples = payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                Message::Audio { rate, samples }
            }
            None => return Err(ProtocolError::UnknownKind(k)),
        },
    };
    Ok(Some(m))
}

pub fn is_dtmf(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// The bytes of one message.
pub fn encode(m: &Message) -> Vec<u8> {
    let (kind, payload): (u8, Vec<u8>) = match m {
        Message::Hangup => (HANGUP, vec![]),
        Message::Uuid(id) => (UUID, id.to_vec()),
        Message::Dtmf(d) => (DTMF, vec![*d as u8]),
        Message::Error(code) => (ERROR, code.clone()),
        Message::Audio { rate, samples } => (
            audio_kind(*rate).unwrap_or(AUDIO_8K),
            samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ),
    };
    let mut out = Vec::with_capacity(3 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&payload[..payload.len().min(u16::MAX as usize)]);
    out
}

pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, m: &Message) -> std::io::Result<()> {
    w.write_all(&encode(m)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_byte_for_byte() {
        let id = parse_uuid("2f3a1c9e-0b4d-4e6f-8a1b-9c0d1e2f3a4b").unwrap();
        assert_eq!(uuid_string(&id), "2f3a1c9e-0b4d-4e6f-8a1b-9c0d1e2f3a4b");
        let msgs = [
            Message::Uuid(id),
            Message::Audio {
                rate: 8000,
                samples: (0..160).map(|i| (i * 100 - 8000) as i16).collect(),
            },
            Message::Audio {
                rate: 16000,
                samples: vec![-1, 1],
            },
            Message::Dtmf('0'),
            Message::Dtmf('#'),
            Message::Error(vec![2]),
            Message::Hangup,
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(encode(m));
        }
        // The exact bytes Asterisk sends and expects.
        assert_eq!(&wire[..3], &[0x01, 0x00, 0x10]);
        assert_eq!(&wire[19..22], &[0x10, 0x01, 0x40]);
        assert_eq!(&wire[wire.len() - 3..], &[0x00, 0x00, 0x00]);
        let mut r = wire.as_slice();
        for m in &msgs {
            assert_eq!(read(&mut r).await.unwrap().as_ref(), Some(m));
        }
        assert_eq!(read(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_messages_are_errors_not_panics() {
        for wire in [
            vec![0x01, 0x00, 0x03, 1, 2, 3],
            vec![0x03, 0x00, 0x01, b'x'],
            vec![0x10, 0x00, 0x03, 1, 2, 3],
            vec![0x42, 0x00, 0x00],
            vec![0x10, 0x01, 0x40, 0, 0],
        ] {
            assert!(read(&mut wire.as_slice()).await.is_err(), "{wire:?}");
        }
        assert_eq!(kind_rate(0x12), Some(16000));
        assert_eq!(audio_kind(48000), Some(0x16));
        assert_eq!(kind_rate(0x19), None);
    }
}
