//! What a speech server sends, made into what the browser plays: PCM16 LE mono at 24 kHz.
//!
//! OpenAI sends exactly that (`response_format: "pcm"`); compatible servers send PCM at their
//! own rate, or a WAV whose RIFF header says the rate and channels (streamed WAVs often leave
//! the sizes at their maximum, so none is trusted). The header is parsed as it streams in,
//! stereo is mixed down, and any other rate goes through `client/audio`'s polyphase resampler,
//! the one the browser runs. Chunks may split samples and frames anywhere.

use audio::resample::Resampler;
use bytes::Bytes;

use super::UpstreamError;

/// The rate the browser plays.
const OUTPUT_RATE_HZ: u32 = protocol::SAMPLE_RATE_HZ;

/// A WAV header larger than this without its `data` chunk is not one we can play: real headers
/// are 44 bytes, or a few hundred with `LIST` metadata.
const MAX_WAV_HEADER_BYTES: usize = 4096;

/// The reply's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TtsFormat {
    /// Raw PCM16 LE mono at the configured rate (OpenAI's `pcm`, at 24 kHz).
    #[default]
    Pcm,
    /// A RIFF/WAVE file (16-bit PCM, mono or stereo, any rate), streamed.
    Wav,
}

impl TtsFormat {
    /// The `response_format` to ask for.
    pub fn as_str(self) -> &'static str {
        match self {
            TtsFormat::Pcm => "pcm",
            TtsFormat::Wav => "wav",
        }
    }
}

/// Turns a speech reply's chunks into 24 kHz mono PCM16.
#[derive(Debug)]
pub(crate) struct SpeechDecoder {
    /// WAV header bytes still being gathered (`None` once the samples start).
    header: Option<Vec<u8>>,
    /// A `pcm` reply's first bytes, until there are enough to tell a WAV sent instead (some
    /// servers answer WAV whatever was asked).
    sniffing: Option<Vec<u8>>,
    channels: usize,
    /// Bytes of a frame split across chunks.
    carry: Vec<u8>,
    /// Mono 24 kHz chunks split mid-sample: the bytes being realigned (at most one is left
    /// between chunks).
    realigned: bytes::BytesMut,
    /// `None` at 24 kHz: the samples pass through.
    resampler: Option<Resampler>,
    /// Mono samples of one chunk, for the resampler; made once, grown as needed.
    mono: Vec<f32>,
}

impl SpeechDecoder {
    /// A decoder for replies in `format`; `pcm_rate_hz` is the rate of a `pcm` reply (a WAV's
    /// header says its own).
    pub(crate) fn new(format: TtsFormat, pcm_rate_hz: u32) -> Result<Self, UpstreamError> {
        let mut decoder = Self {
            header: (format == TtsFormat::Wav).then(Vec::new),
            sniffing: (format == TtsFormat::Pcm).then(Vec::new),
            channels: 1,
            carry: Vec::new(),
            realigned: bytes::BytesMut::new(),
            resampler: None,
            mono: Vec::new(),
        };
        if format == TtsFormat::Pcm {
            decoder.set_rate(pcm_rate_hz)?;
        }
        Ok(decoder)
    }

    fn set_rate(&mut self, rate_hz: u32) -> Result<(), UpstreamError> {
        self.resampler = if rate_hz == OUTPUT_RATE_HZ {
            None
        } else {
            Some(Resampler::new(rate_hz, OUTPUT_RATE_HZ).map_err(|e| {
                UpstreamError::Malformed(format!("speech audio at an unusable rate: {e}"))
            })?)
        };
        Ok(())
    }

    /// The 24 kHz mono PCM16 that `chunk` completes, if any.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Result<Option<Bytes>, UpstreamError> {
        let chunk = match self.sniffing.take() {
            None => chunk,
            Some(mut first) => {
                first.extend_from_slice(&chunk);
                if first.len() < 12 {
                    self.sniffing = Some(first);
                    return Ok(None);
                }
                if &first[..4] == b"RIFF" && &first[8..12] == b"WAVE" {
                    tracing::debug!("the speech server sent WAV for pcm; reading its header");
                    self.header = Some(Vec::new());
                }
                Bytes::from(first)
            }
        };
        let body = match self.header.take() {
            None => chunk,
            Some(mut header) => {
                header.extend_from_slice(&chunk);
                match parse_wav_header(&header)? {
                    Some(wav) => {
                        self.channels = usize::from(wav.channels);
                        self.set_rate(wav.rate_hz)?;
                        Bytes::copy_from_slice(&header[wav.data_start..])
                    }
                    None if header.len() > MAX_WAV_HEADER_BYTES => {
                        return Err(UpstreamError::Malformed(
                            "no WAV data chunk in the speech reply".into(),
                        ));
                    }
                    None => {
                        self.header = Some(header);
                        return Ok(None);
                    }
                }
            }
        };
        Ok(self.samples(body))
    }

    /// At the end of the reply: what is still held back (a reply shorter than the sniffed
    /// prefix), converted.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        let first = self.sniffing.take()?;
        self.samples(Bytes::from(first))
    }

    /// Whole frames of `bytes` (with what was carried), converted.
    fn samples(&mut self, bytes: Bytes) -> Option<Bytes> {
        let frame = 2 * self.channels;
        // The common case, OpenAI's: mono at 24 kHz. Only a sample split between chunks needs
        // work: the chunk is passed on as it is (a slice, no copy) up to its last whole sample.
        if self.resampler.is_none() && self.channels == 1 {
            if self.realigned.is_empty() && bytes.len().is_multiple_of(2) {
                return (!bytes.is_empty()).then_some(bytes);
            }
            // One buffer for every realigned chunk: its memory comes back once the chunk
            // before has been written to the browser.
            self.realigned.extend_from_slice(&bytes);
            let whole = self.realigned.len() - self.realigned.len() % 2;
            return (whole > 0).then(|| self.realigned.split_to(whole).freeze());
        }
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(&bytes);
        let whole = joined.len() - joined.len() % frame;
        self.carry = joined.split_off(whole);
        if joined.is_empty() {
            return None;
        }
        self.mono.clear();
        for frame_bytes in joined.chunks_exact(frame) {
            let sum: f32 = frame_bytes
                .chunks_exact(2)
                .map(|s| audio::pcm::i16_to_f32(i16::from_le_bytes([s[0], s[1]])))
                .sum();
            self.mono.push(sum / self.channels as f32);
        }
        let mut out = Vec::with_capacity(joined.len() / self.channels * 2);
        let mut emit = |x: f32| out.extend_from_slice(&audio::pcm::f32_to_i16(x).to_le_bytes());
        match &mut self.resampler {
            Some(resampler) => resampler.process(&self.mono, &mut emit),
            None => self.mono.iter().copied().for_each(&mut emit),
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// What a WAV header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WavFormat {
    channels: u16,
    rate_hz: u32,
    /// Where the samples begin.
    data_start: usize,
}

/// Parses a RIFF/WAVE header; `Ok(None)` if more bytes are needed.
fn parse_wav_header(bytes: &[u8]) -> Result<Option<WavFormat>, UpstreamError> {
    let malformed = |why: &str| UpstreamError::Malformed(format!("speech WAV: {why}"));
    if bytes.len() < 12 {
        return Ok(None);
    }
    if &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(malformed("not a RIFF/WAVE file"));
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = at + 8;
        if id == b"data" {
            let (channels, rate_hz) = format.ok_or_else(|| malformed("data before fmt"))?;
            return Ok(Some(WavFormat {
                channels,
                rate_hz,
                data_start: body,
            }));
        }
        if body + size > bytes.len() {
            return Ok(None);
        }
        if id == b"fmt " {
            if size < 16 {
                return Err(malformed("short fmt chunk"));
            }
            let field = |offset: usize| {
                u16::from_le_bytes([bytes[body + offset], bytes[body + offset + 1]])
            };
            let (encoding, channels, bits) = (field(0), field(2), field(14));
            let rate_hz = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            // 1: PCM; 0xFFFE: extensible, which servers use for plain PCM too.
            if !matches!(encoding, 1 | 0xFFFE) || bits != 16 || !matches!(channels, 1 | 2) {
                return Err(malformed("only 16-bit PCM, mono or stereo, is playable"));
            }
            format = Some((channels, rate_hz));
        }
        at = body + size + size % 2;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_header(channels: u16, rate_hz: u32, streamed: bool) -> Vec<u8> {
        let size = if streamed { u32::MAX } else { 0 };
        let mut header = Vec::new();
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&size.to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&16u32.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&channels.to_le_bytes());
        header.extend_from_slice(&rate_hz.to_le_bytes());
        header.extend_from_slice(&(rate_hz * 2 * u32::from(channels)).to_le_bytes());
        header.extend_from_slice(&(2 * channels).to_le_bytes());
        header.extend_from_slice(&16u16.to_le_bytes());
        header.extend_from_slice(b"LIST");
        header.extend_from_slice(&4u32.to_le_bytes());
        header.extend_from_slice(b"INFO");
        header.extend_from_slice(b"data");
        header.extend_from_slice(&size.to_le_bytes());
        header
    }

    /// Feeds `bytes` in chunks of `cut` bytes; returns all output.
    fn decode(decoder: &mut SpeechDecoder, bytes: &[u8], cut: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(cut) {
            if let Some(pcm) = decoder.push(Bytes::copy_from_slice(chunk)).unwrap() {
                assert_eq!(pcm.len() % 2, 0);
                out.extend_from_slice(&pcm);
            }
        }
        out
    }

    fn tone(rate_hz: u32, seconds: f64, channels: usize) -> Vec<u8> {
        (0..(f64::from(rate_hz) * seconds) as usize)
            .flat_map(|n| {
                let x = (2.0 * std::f64::consts::PI * 440.0 * n as f64 / f64::from(rate_hz)).sin();
                let sample = ((x * 8_000.0) as i16).to_le_bytes();
                std::iter::repeat_n(sample, channels).flatten()
            })
            .collect()
    }

    #[test]
    fn openai_pcm_passes_through_unchanged() {
        let pcm = tone(24_000, 0.5, 1);
        let mut decoder = SpeechDecoder::new(TtsFormat::Pcm, 24_000).unwrap();
        assert_eq!(decode(&mut decoder, &pcm, 333), pcm);
    }

    #[test]
    fn a_split_sample_is_joined_and_a_short_reply_is_not_lost() {
        let mut decoder = SpeechDecoder::new(TtsFormat::Pcm, 24_000).unwrap();
        let first: Vec<u8> = (1..=13).collect();
        assert_eq!(
            decoder.push(Bytes::from(first)).unwrap().as_deref(),
            Some(&(1..=12).collect::<Vec<u8>>()[..])
        );
        assert_eq!(
            decoder.push(Bytes::from_static(&[14])).unwrap().as_deref(),
            Some(&[13u8, 14][..])
        );
        let mut short = SpeechDecoder::new(TtsFormat::Pcm, 24_000).unwrap();
        assert_eq!(short.push(Bytes::from_static(&[1, 2, 3, 4])).unwrap(), None);
        assert_eq!(short.finish().as_deref(), Some(&[1u8, 2, 3, 4][..]));
    }

    #[test]
    fn a_streamed_stereo_wav_at_another_rate_becomes_24khz_mono() {
        let mut reply = wav_header(2, 22_050, true);
        reply.extend_from_slice(&tone(22_050, 1.0, 2));
        let mut decoder = SpeechDecoder::new(TtsFormat::Wav, 24_000).unwrap();
        let out = decode(&mut decoder, &reply, 37);
        // One second of audio, give or take the resampler's delay line.
        let samples = out.len() / 2;
        assert!((23_900..=24_000).contains(&samples), "{samples}");
        let peak = out
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
            .max()
            .unwrap();
        assert!((7_000..=8_500).contains(&peak), "the level is kept: {peak}");
    }

    #[test]
    fn a_wav_sent_for_pcm_is_recognised() {
        let mut reply = wav_header(1, 22_050, false);
        reply.extend_from_slice(&tone(22_050, 0.5, 1));
        let mut decoder = SpeechDecoder::new(TtsFormat::Pcm, 24_000).unwrap();
        let out = decode(&mut decoder, &reply, 5);
        assert!(
            (11_900..=12_000).contains(&(out.len() / 2)),
            "{}",
            out.len()
        );
    }

    #[test]
    fn pcm_at_16khz_is_resampled() {
        let mut decoder = SpeechDecoder::new(TtsFormat::Pcm, 16_000).unwrap();
        let out = decode(&mut decoder, &tone(16_000, 0.5, 1), 1001);
        assert!(
            (11_900..=12_000).contains(&(out.len() / 2)),
            "{}",
            out.len()
        );
    }

    #[test]
    fn what_is_not_a_playable_wav_is_an_error() {
        let mut decoder = SpeechDecoder::new(TtsFormat::Wav, 24_000).unwrap();
        assert!(
            decoder
                .push(Bytes::from_static(b"ID3\x04 an mp3 instead"))
                .is_err()
        );
        let mut eight_bit = wav_header(1, 24_000, false);
        eight_bit[34] = 8;
        let mut decoder = SpeechDecoder::new(TtsFormat::Wav, 24_000).unwrap();
        assert!(decoder.push(Bytes::from(eight_bit)).is_err());
    }
}
