//! The verified dataset, going out: the pictures and a COCO annotation document, written to
//! an archive (a [`DatasetSink`]) in bounded memory, whatever the dataset's size.
//!
//! The archive holds `annotations.json` first, then `images/<picture id>.<ext>`. The store
//! is read a page at a time, three times: the images of the document, its annotations, then
//! the pictures' bytes, one picture at a time. Only the map from picture ids to the
//! document's image ids (24 bytes a picture) grows with the dataset. What is exported is
//! what was verified when the export started: pictures taken later are left out, and a
//! picture deleted meanwhile is left out of the files (and logged).
//!
//! COCO: `categories` are the seed species (every known one, `supercategory` "seed");
//! `annotations` are the boxes verified as a species, `bbox` `[x, y, width, height]` in
//! pixels, with `drawn_by_person`, `verified_by` and `verified_at`; boxes deleted as "not a
//! seed" are left out. A picture imported already labelled has no annotation; its image
//! carries `seed_category_id`, `nb_seeds` and `zoom_level`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use datastore::{
    BlobError, BlobKey, BlobStore, DatasetCursor, DatasetFilter, DatasetPicture, DatasetStore,
    SeedStore, StoreError,
};
use serde_json::json;
use uuid::Uuid;

/// Pictures read from the store at a time.
const PAGE: usize = 100;

/// Where an export writes its files, one after the other (a ZIP archive, say). Its methods
/// may block: run an export on a blocking thread.
pub trait DatasetSink: Send {
    /// Starts the next file; `compress` for text, not for pictures (already compressed).
    fn start_file(&mut self, name: &str, compress: bool) -> Result<(), String>;
    /// Appends to the file started last.
    fn write(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// Ends the archive.
    fn finish(&mut self) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("could not read the dataset: {0}")]
    Storage(String),
    #[error("could not write the archive: {0}")]
    Sink(String),
}

impl From<StoreError> for DatasetError {
    fn from(error: StoreError) -> Self {
        DatasetError::Storage(error.to_string())
    }
}

impl From<BlobError> for DatasetError {
    fn from(error: BlobError) -> Self {
        DatasetError::Storage(error.to_string())
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub pictures: usize,
    pub annotations: usize,
    pub picture_bytes: u64,
}

pub struct DatasetService {
    dataset: Arc<dyn DatasetStore>,
    seeds: Arc<dyn SeedStore>,
    blobs: Arc<dyn BlobStore>,
}

impl DatasetService {
    pub fn new(
        dataset: Arc<dyn DatasetStore>,
        seeds: Arc<dyn SeedStore>,
        blobs: Arc<dyn BlobStore>,
    ) -> Self {
        Self {
            dataset,
            seeds,
            blobs,
        }
    }

    /// Writes the verified pictures that pass `filter`, and their COCO document, to `sink`.
    pub async fn export(
        &self,
        mut filter: DatasetFilter,
        sink: &mut dyn DatasetSink,
    ) -> Result<ExportSummary, DatasetError> {
        let started = Utc::now();
        filter.to = Some(filter.to.map_or(started, |to| to.min(started)));
        let mut seeds = self.seeds.list_seeds().await?;
        seeds.sort_by(|a, b| a.name.cmp(&b.name));
        let categories: HashMap<Uuid, usize> =
            seeds.iter().zip(1..).map(|(s, id)| (s.id, id)).collect();

        let sink_error = DatasetError::Sink;
        sink.start_file("annotations.json", true)
            .map_err(sink_error)?;
        let head = json!({
            "description": "Nachet verified seed dataset",
            "date_created": started.to_rfc3339(),
            "filter": {
                "user_id": filter.user_id,
                "folder_id": filter.folder_id,
                "from": filter.from.map(|t| t.to_rfc3339()),
                "to": filter.to.map(|t| t.to_rfc3339()),
            },
        });
        let category_list: Vec<_> = seeds
            .iter()
            .map(|s| json!({"id": categories[&s.id], "name": s.name, "supercategory": "seed", "seed_id": s.id}))
            .collect();
        write_json(
            sink,
            &format!(
                "{{\"info\":{head},\"licenses\":[],\"categories\":{},\"images\":[",
                serde_json::Value::Array(category_list)
            ),
        )?;

        // Images.
        let mut image_ids: HashMap<Uuid, usize> = HashMap::new();
        self.each_page(&filter, |page| {
            for picture in page {
                let id = image_ids.len() + 1;
                image_ids.insert(picture.id, id);
                let mut image = json!({
                    "id": id,
                    "file_name": file_name(picture),
                    "width": picture.width,
                    "height": picture.height,
                    "date_captured": picture.created_at.to_rfc3339(),
                    "picture_id": picture.id,
                    "folder": picture.folder_name,
                    "owner": picture.owner_email,
                });
                if let Some(label) = &picture.label {
                    image["seed_category_id"] = categories.get(&label.seed_id).copied().into();
                    image["nb_seeds"] = label.nb_seeds.into();
                    image["zoom_level"] = label.zoom_level.into();
                }
                let separator = if id == 1 { "" } else { "," };
                write_json(sink, &format!("{separator}{image}"))?;
            }
            Ok(())
        })
        .await?;
        write_json(sink, "],\"annotations\":[")?;

        // Annotations.
        let mut annotations = 0;
        self.each_page(&filter, |page| {
            for picture in page {
                let Some(image_id) = image_ids.get(&picture.id) else {
                    continue; // Verified after the images were listed.
                };
                for b in &picture.boxes {
                    let Some(category_id) = categories.get(&b.seed_id) else {
                        continue; // A species created after the export started.
                    };
                    annotations += 1;
                    let (w, h) = (
                        b.corners.bottom_x - b.corners.top_x,
                        b.corners.bottom_y - b.corners.top_y,
                    );
                    let annotation = json!({
                        "id": annotations,
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": [b.corners.top_x, b.corners.top_y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                        "drawn_by_person": b.drawn_by_person,
                        "verified_by": b.verified_by,
                        "verified_at": b.verified_at.to_rfc3339(),
                    });
                    let separator = if annotations == 1 { "" } else { "," };
                    write_json(sink, &format!("{separator}{annotation}"))?;
                }
            }
            Ok(())
        })
        .await?;
        write_json(sink, "]}")?;

        // The pictures, one at a time.
        let mut summary = ExportSummary {
            annotations,
            ..ExportSummary::default()
        };
        let mut after = None;
        loop {
            let page = self.dataset.dataset_page(&filter, after, PAGE).await?;
            for picture in page
                .pictures
                .iter()
                .filter(|p| image_ids.contains_key(&p.id))
            {
                let key = BlobKey::parse(&picture.blob_key).map_err(DatasetError::Storage)?;
                let bytes = match self.blobs.get(&key).await {
                    Ok(bytes) => bytes,
                    Err(BlobError::NotFound(_)) => {
                        tracing::warn!(picture = %picture.id, "a picture of the dataset was deleted during the export");
                        continue;
                    }
                    Err(other) => return Err(other.into()),
                };
                sink.start_file(&file_name(picture), false)
                    .map_err(sink_error)?;
                sink.write(&bytes).map_err(sink_error)?;
                summary.pictures += 1;
                summary.picture_bytes += bytes.len() as u64;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        sink.finish().map_err(sink_error)?;
        Ok(summary)
    }

    /// Calls `each` with every page of the verified pictures that pass `filter`.
    async fn each_page(
        &self,
        filter: &DatasetFilter,
        mut each: impl FnMut(&[DatasetPicture]) -> Result<(), DatasetError>,
    ) -> Result<(), DatasetError> {
        let mut after: Option<DatasetCursor> = None;
        loop {
            let page = self.dataset.dataset_page(filter, after, PAGE).await?;
            each(&page.pictures)?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }
}

fn write_json(sink: &mut dyn DatasetSink, text: &str) -> Result<(), DatasetError> {
    sink.write(text.as_bytes()).map_err(DatasetError::Sink)
}

/// `images/<picture id>.<extension of its blob>`.
fn file_name(picture: &DatasetPicture) -> String {
    let extension = picture
        .blob_key
        .rsplit_once('.')
        .map_or("bin", |(_, extension)| extension);
    format!("images/{}.{extension}", picture.id)
}
