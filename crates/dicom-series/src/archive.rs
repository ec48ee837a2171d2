//! The series archive of one attempt: entry names decided from the listing before anything
//! is retrieved, and the check that the instances received are exactly the listed ones.
//!
//! # Entry names ([`entry_names`], contract 2.3)
//!
//! Instances are sorted by (InstanceNumber, SOP Instance UID), instances without an
//! InstanceNumber last; then, with `M` the instance's Modality (letters and digits only,
//! `OT` when missing or empty):
//!
//! - the first instance with number `n` is `M_n.dcm` (e.g. `CT_1.dcm`, `CT_-2.dcm`);
//! - further instances with the same `M` and `n` are `M_n_2.dcm`, `M_n_3.dcm`, ... in SOP
//!   Instance UID order;
//! - instances without InstanceNumber are `M_unnumbered_1.dcm`, `M_unnumbered_2.dcm`, ...
//!   in SOP Instance UID order.
//!
//! The names are distinct (the modality has no `_`, so the parts cannot run into each
//! other) and depend only on the set of instances, never on the order they are retrieved
//! in: the same series gives the same names on every run. The entries are written in the
//! order the instances arrive.

use std::collections::{HashMap, HashSet};

use crate::ports::{Archive, ArchiveError, ArchiveWriter, InstanceListing};

/// The modality part of an entry name: letters and digits of the Modality, `OT` (other)
/// when that leaves nothing.
pub fn modality_part(modality: Option<&str>) -> String {
    let cleaned: String = modality
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if cleaned.is_empty() {
        "OT".to_string()
    } else {
        cleaned
    }
}

/// Each instance's entry name, sorted as the [module documentation](self#entry-names-entry_names)
/// says: (index into `instances`, name).
pub fn entry_names(instances: &[InstanceListing]) -> Vec<(usize, String)> {
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&instances[a], &instances[b]);
        // Numbered first (false < true), then by number, then by UID.
        (
            a.instance_number.is_none(),
            a.instance_number,
            &a.sop_instance_uid,
        )
            .cmp(&(
                b.instance_number.is_none(),
                b.instance_number,
                &b.sop_instance_uid,
            ))
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    order
        .into_iter()
        .map(|index| {
            let instance = &instances[index];
            let modality = modality_part(instance.modality.as_deref());
            let name = match instance.instance_number {
                Some(number) => {
                    let base = format!("{modality}_{number}");
                    let count = seen.entry(base.clone()).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        format!("{base}.dcm")
                    } else {
                        format!("{base}_{count}.dcm")
                    }
                }
                None => {
                    let base = format!("{modality}_unnumbered");
                    let count = seen.entry(base.clone()).or_insert(0);
                    *count += 1;
                    format!("{base}_{count}.dcm")
                }
            };
            (index, name)
        })
        .collect()
}

/// The archive a source retrieves a series into: an [`ArchiveWriter`] whose entry names
/// come from the listing, which refuses an instance that is not listed or comes twice, and
/// which finishes only when every listed instance has come. Dropped unfinished, the
/// writer removes what it wrote.
pub struct SeriesArchive {
    /// SOP Instance UID → entry name.
    names: HashMap<String, String>,
    received: HashSet<String>,
    writer: Box<dyn ArchiveWriter>,
}

impl SeriesArchive {
    /// The archive of the `listed` instances, written by `writer`. SOP Instance UIDs listed
    /// twice count once.
    pub fn new(listed: &[InstanceListing], writer: Box<dyn ArchiveWriter>) -> Self {
        let names = entry_names(listed)
            .into_iter()
            .map(|(index, name)| (listed[index].sop_instance_uid.clone(), name))
            .collect();
        Self {
            names,
            received: HashSet::new(),
            writer,
        }
    }

    /// Instances listed.
    pub fn listed(&self) -> usize {
        self.names.len()
    }

    /// Instances begun so far.
    pub fn received(&self) -> usize {
        self.received.len()
    }

    /// The entry name of a listed instance.
    pub fn entry_name(&self, sop_instance_uid: &str) -> Option<&str> {
        self.names.get(sop_instance_uid).map(String::as_str)
    }

    /// Starts the entry of instance `sop_instance_uid` (its Part-10 bytes follow through
    /// [`write`](Self::write)); `size` when known in advance.
    pub fn begin_instance(
        &mut self,
        sop_instance_uid: &str,
        size: Option<u64>,
    ) -> Result<(), ArchiveError> {
        let Some(name) = self.names.get(sop_instance_uid) else {
            return Err(ArchiveError::NotListed(format!(
                "sent instance {sop_instance_uid}, which is not among the {} listed (QIDO-RS)",
                self.names.len()
            )));
        };
        if !self.received.insert(sop_instance_uid.to_string()) {
            return Err(ArchiveError::NotListed(format!(
                "sent instance {sop_instance_uid} twice"
            )));
        }
        self.writer.start_entry(name, size)
    }

    /// The next bytes of the current instance.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.writer.write(bytes)
    }

    /// Completes the archive once every listed instance has come.
    pub fn finish(self) -> Result<Archive, ArchiveError> {
        if self.received.len() < self.names.len() {
            let mut missing: Vec<&str> = self
                .names
                .keys()
                .filter(|uid| !self.received.contains(*uid))
                .map(String::as_str)
                .collect();
            missing.sort_unstable();
            let sample: Vec<&str> = missing.iter().take(3).copied().collect();
            return Err(ArchiveError::NotListed(format!(
                "listed {} instances (QIDO-RS) but sent {} (WADO-RS); {} listed and not sent [{}]",
                self.names.len(),
                self.received.len(),
                missing.len(),
                sample.join(", ")
            )));
        }
        self.writer.finish()
    }
}

impl std::fmt::Debug for SeriesArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesArchive")
            .field("listed", &self.names.len())
            .field("received", &self.received.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(uid: &str, modality: Option<&str>, number: Option<i64>) -> InstanceListing {
        InstanceListing {
            sop_instance_uid: uid.into(),
            instance_number: number,
            modality: modality.map(str::to_string),
        }
    }

    fn names(instances: &[InstanceListing]) -> Vec<String> {
        entry_names(instances).into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn missing_and_repeated_numbers_get_distinct_deterministic_names() {
        let instances = vec![
            instance("1.9", Some("CT"), Some(2)),
            instance("1.3", Some("CT"), None),
            instance("1.1", Some("CT"), Some(2)),
            instance("1.2", Some("CT"), Some(1)),
            instance("1.5", Some("CT"), None),
            instance("1.4", Some(" C-T "), Some(-3)),
            instance("1.6", None, Some(7)),
            instance("1.7", Some(""), Some(7)),
        ];
        assert_eq!(
            names(&instances),
            [
                "CT_-3.dcm",
                "CT_1.dcm",
                "CT_2.dcm",
                "CT_2_2.dcm",
                "OT_7.dcm",
                "OT_7_2.dcm",
                "CT_unnumbered_1.dcm",
                "CT_unnumbered_2.dcm",
            ]
        );
        let order: Vec<&str> = entry_names(&instances)
            .into_iter()
            .map(|(i, _)| instances[i].sop_instance_uid.as_str())
            .collect();
        assert_eq!(
            order,
            ["1.4", "1.2", "1.1", "1.9", "1.6", "1.7", "1.3", "1.5"]
        );

        // Any order of the listing gives each instance the same name.
        let pairs = |list: &[InstanceListing]| {
            let mut p: Vec<(String, String)> = entry_names(list)
                .into_iter()
                .map(|(i, n)| (list[i].sop_instance_uid.clone(), n))
                .collect();
            p.sort();
            p
        };
        let mut reversed = instances.clone();
        reversed.reverse();
        assert_eq!(pairs(&instances), pairs(&reversed));
    }

    /// (name, size announced, bytes).
    type Entry = (String, Option<u64>, Vec<u8>);

    /// Entries in memory.
    #[derive(Default)]
    struct Entries(std::sync::Arc<std::sync::Mutex<Vec<Entry>>>);

    impl ArchiveWriter for Entries {
        fn start_entry(&mut self, name: &str, size: Option<u64>) -> Result<(), ArchiveError> {
            self.0
                .lock()
                .unwrap()
                .push((name.to_string(), size, Vec::new()));
            Ok(())
        }
        fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
            let mut entries = self.0.lock().unwrap();
            entries.last_mut().unwrap().2.extend_from_slice(bytes);
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<Archive, ArchiveError> {
            let entries = self.0.lock().unwrap();
            Ok(Archive {
                path: "a.zip".into(),
                file_name: "a.zip".into(),
                entries: entries.iter().map(|e| e.0.clone()).collect(),
                size: 0,
            })
        }
    }

    fn listed() -> Vec<InstanceListing> {
        vec![
            instance("1.2", Some("MR"), Some(2)),
            instance("1.1", Some("MR"), Some(1)),
        ]
    }

    #[test]
    fn instances_are_written_in_arrival_order_under_their_listed_names() {
        let entries = Entries::default();
        let written = entries.0.clone();
        let mut archive = SeriesArchive::new(&listed(), Box::new(entries));
        assert_eq!(archive.entry_name("1.1"), Some("MR_1.dcm"));
        archive.begin_instance("1.2", Some(3)).unwrap();
        archive.write(b"ab").unwrap();
        archive.write(b"c").unwrap();
        archive.begin_instance("1.1", None).unwrap();
        archive.write(b"x").unwrap();
        let done = archive.finish().unwrap();
        assert_eq!(done.entries, ["MR_2.dcm", "MR_1.dcm"]);
        assert_eq!(
            *written.lock().unwrap(),
            [
                ("MR_2.dcm".to_string(), Some(3), b"abc".to_vec()),
                ("MR_1.dcm".to_string(), None, b"x".to_vec())
            ]
        );
    }

    #[test]
    fn an_instance_not_listed_twice_sent_or_missing_is_refused() {
        let mut archive = SeriesArchive::new(&listed(), Box::new(Entries::default()));
        let error = archive.begin_instance("9.9", None).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::NotListed(m) if m.contains("9.9") && m.contains("2 listed")),
            "{error:?}"
        );
        archive.begin_instance("1.1", None).unwrap();
        let error = archive.begin_instance("1.1", None).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::NotListed(m) if m.contains("twice")),
            "{error:?}"
        );
        let error = archive.finish().unwrap_err();
        assert_eq!(
            error,
            ArchiveError::NotListed(
                "listed 2 instances (QIDO-RS) but sent 1 (WADO-RS); 1 listed and not sent [1.2]"
                    .into()
            )
        );
    }
}
