//! Decoding real audio in every supported format.

use voxswap_audio::{read_mono, AudioReader, ChannelMix};

use crate::util::*;

#[test]
fn lossless_formats_agree_exactly() {
    let wav = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let flac = read_mono(data("speech_m.flac"), ChannelMix::Downmix).unwrap();
    assert_eq!(wav.sample_rate, 16000);
    assert_eq!(wav.samples.len(), 44545);
    assert_eq!(flac, wav);
}

#[test]
fn lossy_formats_are_close_to_the_original() {
    let wav = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let energy: f32 = wav.samples.iter().map(|v| v * v).sum();
    for name in ["speech_m.ogg", "speech_m.mp3"] {
        let got = read_mono(data(name), ChannelMix::Downmix).unwrap();
        assert_eq!(got.sample_rate, 16000, "{name}");
        // Gapless decoding: the same length, and the codec's error is 20 dB below the signal.
        assert!(
            (got.samples.len() as i64 - 44545).abs() <= 1152,
            "{name}: {} samples",
            got.samples.len()
        );
        let n = got.samples.len().min(wav.samples.len());
        let err: f32 = wav.samples[..n]
            .iter()
            .zip(&got.samples[..n])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let snr_db = 10.0 * (energy / err).log10();
        assert!(snr_db > 10.0, "{name}: SNR {snr_db:.1} dB");
    }
}

#[test]
fn stereo_downmix_and_channel_selection() {
    let p = data("stereo_44k_24bit.wav");
    let mix = read_mono(&p, ChannelMix::Downmix).unwrap();
    let left = read_mono(&p, ChannelMix::Select(0)).unwrap();
    let right = read_mono(&p, ChannelMix::Select(1)).unwrap();
    assert_eq!(mix.sample_rate, 44100);
    assert_eq!(mix.samples.len(), 44100);
    for i in (0..44100).step_by(97) {
        assert!((mix.samples[i] - 0.5 * (left.samples[i] + right.samples[i])).abs() < 1e-6);
    }
    // Two different voices: the channels differ.
    let diff: f32 = left
        .samples
        .iter()
        .zip(&right.samples)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 100.0);
}

#[test]
fn integer_widths_scale_to_the_same_signal() {
    // The same sine written at 8, 16, 24 and 32 bits reads back within each width's step.
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f64> = (0..4000).map(|i| 0.6 * (i as f64 * 0.05).sin()).collect();
    for bits in [8u16, 16, 24, 32] {
        let p = dir.path().join(format!("b{bits}.wav"));
        let spec = hound::WavSpec {
            channels: 3,
            sample_rate: 8000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        let full = (1i64 << (bits - 1)) as f64;
        for &v in &x {
            for _ in 0..3 {
                w.write_sample((v * full) as i32).unwrap();
            }
        }
        w.finalize().unwrap();
        let got = read_mono(&p, ChannelMix::Select(2)).unwrap();
        // One step of the integer width, or float32's own resolution for 32-bit.
        let step = (2.0 / full).max(1e-7);
        let err = x
            .iter()
            .zip(&got.samples)
            .map(|(a, b)| (a - f64::from(*b)).abs())
            .fold(0.0, f64::max);
        assert!(err <= step, "{bits}-bit: error {err}");
    }
}

#[test]
fn chunked_reader_equals_whole_read() {
    let whole = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let mut r = AudioReader::open(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let mut chunks = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read(&mut buf, 1000).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 1000);
        chunks.extend_from_slice(&buf);
    }
    assert_eq!(chunks, whole.samples);
    assert_eq!(r.frames_read(), whole.samples.len() as u64);
}

#[test]
fn adpcm_and_64_bit_float_wav_decode() {
    // IMA and MS ADPCM (made by sox from speech_m.wav): 4 bits a sample, so close, not equal.
    let wav = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let energy: f32 = wav.samples.iter().map(|v| v * v).sum();
    for name in ["speech_m_ima.wav", "speech_m_ms.wav"] {
        let got = read_mono(data(name), ChannelMix::Downmix).unwrap();
        assert_eq!(got.sample_rate, 16000, "{name}");
        assert!(
            (got.samples.len() as i64 - 44545).abs() <= 1024,
            "{name}: {}",
            got.samples.len()
        );
        let n = got.samples.len().min(wav.samples.len());
        let err: f32 = (0..n).map(|i| (wav.samples[i] - got.samples[i]).powi(2)).sum();
        let snr_db = 10.0 * (energy / err).log10();
        assert!(snr_db > 15.0, "{name}: SNR {snr_db:.1} dB");
        let info = AudioReader::open(data(name), ChannelMix::Downmix).unwrap();
        assert!(
            info.info().format.to_lowercase().contains("adpcm"),
            "{}",
            info.info().format
        );
    }

    // 64-bit float WAV (WAVE_FORMAT_IEEE_FLOAT, 64 bits), written byte by byte: hound writes
    // no such files.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f64.wav");
    let x: Vec<f64> = (0..8000).map(|i| 0.4 * (i as f64 * 0.01).sin()).collect();
    let mut b = Vec::new();
    let data_len = (x.len() * 8) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&(8000u32 * 8).to_le_bytes());
    b.extend_from_slice(&8u16.to_le_bytes());
    b.extend_from_slice(&64u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for v in &x {
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&p, b).unwrap();
    let got = read_mono(&p, ChannelMix::Downmix).unwrap();
    assert_eq!((got.sample_rate, got.samples.len()), (8000, 8000));
    for (a, b) in x.iter().zip(&got.samples) {
        assert!((a - f64::from(*b)).abs() < 1e-6);
    }
}
