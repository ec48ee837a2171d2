//! [`ZipSink`]: the `inference::DatasetSink` port as a ZIP archive written front to back
//! (entries with data descriptors, no seeking), into any `Write`: a file, or a pipe to an
//! HTTP answer. Text is deflated; pictures are stored (they are compressed already).
//!
//! Architecture invariant: `zip` types stay inside this crate.

use std::io::Write;

use inference::DatasetSink;
use zip::CompressionMethod;
use zip::ZipWriter;
use zip::write::{SimpleFileOptions, StreamWriter};

pub struct ZipSink<W: Write + Send> {
    zip: Option<ZipWriter<StreamWriter<W>>>,
}

impl<W: Write + Send> ZipSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            zip: Some(ZipWriter::new_stream(out)),
        }
    }

    fn zip(&mut self) -> Result<&mut ZipWriter<StreamWriter<W>>, String> {
        self.zip
            .as_mut()
            .ok_or_else(|| "the archive is already finished".to_owned())
    }
}

impl<W: Write + Send> DatasetSink for ZipSink<W> {
    fn start_file(&mut self, name: &str, compress: bool) -> Result<(), String> {
        let method = if compress {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let options = SimpleFileOptions::default().compression_method(method);
        self.zip()?
            .start_file(name, options)
            .map_err(|e| format!("starting {name}: {e}"))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.zip()?.write_all(bytes).map_err(|e| e.to_string())
    }

    fn finish(&mut self) -> Result<(), String> {
        let zip = self
            .zip
            .take()
            .ok_or_else(|| "the archive is already finished".to_owned())?;
        let mut out = zip.finish().map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_streamed_archive_reads_back() {
        let mut bytes = Vec::new();
        let mut sink = ZipSink::new(&mut bytes);
        sink.start_file("annotations.json", true).unwrap();
        sink.write(b"{\"images\":[").unwrap();
        sink.write(b"]}").unwrap();
        sink.start_file("images/a.png", false).unwrap();
        sink.write(&[1, 2, 3]).unwrap();
        sink.finish().unwrap();
        assert!(sink.finish().is_err(), "only once");
        drop(sink);

        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut text = String::new();
        archive
            .by_name("annotations.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"images\":[]}");
        let mut picture = Vec::new();
        archive
            .by_name("images/a.png")
            .unwrap()
            .read_to_end(&mut picture)
            .unwrap();
        assert_eq!(picture, [1, 2, 3]);
    }
}
