//! Gzip JSON Lines: the event log's file format.

use std::io::{Read, Write};

use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression};

/// Compresses lines (each without its newline) into one gzip member of JSON Lines.
pub fn gzip_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    for line in lines {
        enc.write_all(line.as_bytes())
            .expect("writing to a Vec cannot fail");
        enc.write_all(b"\n").expect("writing to a Vec cannot fail");
    }
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses a (possibly multi-member) gzip file into its text.
///
/// Returns the text decoded so far and whether the file ended cleanly: a writer that crashed
/// mid-append leaves a torn last member, whose events were never acknowledged.
pub fn gunzip_text(data: &[u8]) -> (String, bool) {
    let mut out = Vec::with_capacity(data.len() * 6);
    let mut dec = MultiGzDecoder::new(data);
    let mut buf = [0u8; 64 * 1024];
    let clean = loop {
        match dec.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    if !clean {
        // Keep only whole lines from a torn tail.
        let keep = out.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        out.truncate(keep);
    }
    (String::from_utf8_lossy(&out).into_owned(), clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_member_files_decode_and_torn_tails_are_cut() {
        let mut file = gzip_lines(["{\"a\":1}", "{\"a\":2}"]);
        file.extend(gzip_lines(["{\"a\":3}"]));
        let (text, clean) = gunzip_text(&file);
        assert!(clean);
        assert_eq!(text.lines().count(), 3);
        let torn = gzip_lines(["{\"a\":4}"; 50]);
        file.extend_from_slice(&torn[..torn.len() / 2]);
        let (text, clean) = gunzip_text(&file);
        assert!(!clean);
        assert!(text.lines().count() >= 3);
        assert!(text.ends_with('\n'));
    }
}
