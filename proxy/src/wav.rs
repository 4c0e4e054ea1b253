//! A minimal WAV reader for the command-line tools and tests: 16-bit PCM only.

/// Audio read from a WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// Samples per second.
    pub sample_rate_hz: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Interleaved PCM16 samples.
    pub samples: Vec<i16>,
}

/// Why a WAV file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not a RIFF/WAVE file.
    #[error("not a RIFF/WAVE file")]
    NotWav,
    /// Not 16-bit integer PCM.
    #[error("only 16-bit integer PCM is supported (format {format}, {bits} bits)")]
    Unsupported {
        /// The format tag.
        format: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// A chunk runs past the end of the file.
    #[error("the file is truncated")]
    Truncated,
}

impl Wav {
    /// Parses a WAV file held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, WavError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(WavError::NotWav);
        }
        let mut format = None;
        let mut offset = 12;
        while offset + 8 <= bytes.len() {
            let id = &bytes[offset..offset + 4];
            let size =
                u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"))
                    as usize;
            let body_start = offset + 8;
            // Streamed WAVs may carry a placeholder size for data; read to the end then.
            let body_end = body_start.saturating_add(size).min(bytes.len());
            let body = &bytes[body_start..body_end];
            match id {
                b"fmt " => {
                    if body.len() < 16 {
                        return Err(WavError::Truncated);
                    }
                    let tag = u16::from_le_bytes([body[0], body[1]]);
                    let channels = u16::from_le_bytes([body[2], body[3]]);
                    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                    let bits = u16::from_le_bytes([body[14], body[15]]);
                    // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which sox writes for PCM too.
                    if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 {
                        return Err(WavError::Unsupported { format: tag, bits });
                    }
                    format = Some((rate, channels));
                }
                b"data" => {
                    let (sample_rate_hz, channels) = format.ok_or(WavError::NotWav)?;
                    let samples = body
                        .chunks_exact(2)
                        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                        .collect();
                    return Ok(Self {
                        sample_rate_hz,
                        channels,
                        samples,
                    });
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            offset = body_start + size + size % 2;
        }
        Err(WavError::Truncated)
    }

    /// The first channel (or the mix of all) as mono PCM16 LE bytes.
    pub fn mono_pcm16le(&self) -> Vec<u8> {
        let channels = usize::from(self.channels);
        self.samples
            .chunks_exact(channels)
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                (sum / channels as i32) as i16
            })
            .flat_map(i16::to_le_bytes)
            .collect()
    }

    /// Writes mono PCM16 samples as a WAV file.
    pub fn encode_mono(sample_rate_hz: u32, pcm16le: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + pcm16le.len());
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + pcm16le.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&sample_rate_hz.to_le_bytes());
        out.extend_from_slice(&(sample_rate_hz * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(pcm16le.len() as u32).to_le_bytes());
        out.extend_from_slice(pcm16le);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_mono() {
        let pcm: Vec<u8> = [1i16, -2, 300, -32768]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let wav = Wav::parse(&Wav::encode_mono(24_000, &pcm)).unwrap();
        assert_eq!(wav.sample_rate_hz, 24_000);
        assert_eq!(wav.channels, 1);
        assert_eq!(wav.mono_pcm16le(), pcm);
    }

    #[test]
    fn stereo_is_mixed_down() {
        let mut wav = Wav::parse(&Wav::encode_mono(24_000, &[0; 8])).unwrap();
        wav.channels = 2;
        wav.samples = vec![100, 300, -10, -30];
        let mono = wav.mono_pcm16le();
        assert_eq!(
            mono,
            [200i16, -20]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(Wav::parse(b"hello"), Err(WavError::NotWav));
        let mut float = Wav::encode_mono(24_000, &[0; 4]);
        float[20] = 3; // IEEE float
        assert!(matches!(
            Wav::parse(&float),
            Err(WavError::Unsupported { .. })
        ));
        let mut cut = Wav::encode_mono(24_000, &[0; 4]);
        cut.truncate(30);
        assert_eq!(Wav::parse(&cut), Err(WavError::Truncated));
    }
}
