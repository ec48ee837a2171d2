//! The series archive of one attempt: each instance written into its entry as it arrives,
//! named from its own header, and the check that what came is the whole series.
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
//!
//! # One pass ([`SeriesArchive`])
//!
//! The series is not listed instance by instance beforehand (on Orthanc that listing alone
//! costs two to three times the whole download): each instance's SOP Instance UID,
//! InstanceNumber and Modality come from its own header, which the source reads from the
//! instance's first bytes. An instance whose name cannot change any more is written under
//! its final name at once: one with an InstanceNumber no earlier instance of its modality
//! had, which is the whole series in the usual case. Any other (no InstanceNumber, or a
//! number already taken) is written under a placeholder (`pending-{k}`, never a final
//! name), and at the end the writer renames what the whole set decides (one more pass over
//! the archive, which only such series pay). Completeness: every instance comes once, and
//! as many come as the server's series search counts (Number of Series Related Instances).

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// The series' modality: the one most instances name (ties: the first alphabetically).
pub fn modality_of(instances: &[InstanceListing]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for modality in instances.iter().filter_map(|i| i.modality.as_deref()) {
        let modality = modality.trim();
        if !modality.is_empty() {
            *counts.entry(modality).or_default() += 1;
        }
    }
    let most = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|&(_, n)| n == most)
        .map(|(m, _)| m.to_string())
}

/// The archive a source retrieves a series into: an [`ArchiveWriter`] fed instance by
/// instance, which refuses an instance that comes twice, names the entries as the
/// [module documentation](self#one-pass-seriesarchive) says, and finishes only when as
/// many instances came as the server counts. Dropped unfinished, the writer removes what
/// it wrote.
pub struct SeriesArchive {
    /// Instances in the series, as the server's series search counts them (when it does).
    expected: Option<u64>,
    /// The instances begun, in arrival order.
    instances: Vec<InstanceListing>,
    received: HashSet<String>,
    /// Final names already given on arrival.
    named: HashSet<String>,
    writer: Box<dyn ArchiveWriter>,
}

impl SeriesArchive {
    /// The archive of a series of `expected` instances (`None`: the server does not say how
    /// many), written by `writer`.
    pub fn new(expected: Option<u64>, writer: Box<dyn ArchiveWriter>) -> Self {
        Self {
            expected,
            instances: Vec::new(),
            received: HashSet::new(),
            named: HashSet::new(),
            writer,
        }
    }

    /// Instances begun so far.
    pub fn received(&self) -> usize {
        self.instances.len()
    }

    /// Starts the entry of `instance` (read from its header; its Part-10 bytes follow
    /// through [`write`](Self::write)); `size` when known in advance.
    pub fn begin_instance(
        &mut self,
        instance: InstanceListing,
        size: Option<u64>,
    ) -> Result<(), ArchiveError> {
        if !self.received.insert(instance.sop_instance_uid.clone()) {
            return Err(ArchiveError::Inconsistent(format!(
                "sent instance {} twice",
                instance.sop_instance_uid
            )));
        }
        let name = match instance.instance_number {
            Some(number) => {
                let name = format!(
                    "{}_{number}.dcm",
                    modality_part(instance.modality.as_deref())
                );
                if self.named.insert(name.clone()) {
                    name
                } else {
                    self.placeholder()
                }
            }
            None => self.placeholder(),
        };
        self.writer.start_entry(&name, size)?;
        self.instances.push(instance);
        Ok(())
    }

    /// A name no final name can be: `pending-{k}`.
    fn placeholder(&self) -> String {
        format!("pending-{}", self.instances.len() + 1)
    }

    /// The next bytes of the current instance.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.writer.write(bytes)
    }

    /// Completes the archive once the whole series has come, each entry under its final name.
    pub fn finish(self) -> Result<Archive, ArchiveError> {
        if let Some(expected) = self.expected
            && self.instances.len() as u64 != expected
        {
            return Err(ArchiveError::Inconsistent(format!(
                "the server counts {expected} instances in the series (QIDO-RS) but sent {} (WADO-RS)",
                self.instances.len()
            )));
        }
        let mut names = vec![String::new(); self.instances.len()];
        for (index, name) in entry_names(&self.instances) {
            names[index] = name;
        }
        let mut archive = self.writer.finish(&names)?;
        archive.modality = modality_of(&self.instances);
        Ok(archive)
    }
}

impl std::fmt::Debug for SeriesArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesArchive")
            .field("expected", &self.expected)
            .field("received", &self.instances.len())
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

    /// Entries in memory; `finish` renames them as told.
    #[derive(Default)]
    struct Entries(std::sync::Arc<std::sync::Mutex<Vec<Entry>>>);

    impl ArchiveWriter for Entries {
        fn start_entry(&mut self, name: &str, size: Option<u64>) -> Result<(), ArchiveError> {
            let mut entries = self.0.lock().unwrap();
            assert!(entries.iter().all(|e| e.0 != name), "{name} written twice");
            entries.push((name.to_string(), size, Vec::new()));
            Ok(())
        }
        fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
            let mut entries = self.0.lock().unwrap();
            entries.last_mut().unwrap().2.extend_from_slice(bytes);
            Ok(())
        }
        fn finish(self: Box<Self>, names: &[String]) -> Result<Archive, ArchiveError> {
            let mut entries = self.0.lock().unwrap();
            assert_eq!(names.len(), entries.len());
            for (entry, name) in entries.iter_mut().zip(names) {
                entry.0 = name.clone();
            }
            Ok(Archive {
                path: "a.zip".into(),
                file_name: "a.zip".into(),
                entries: names.to_vec(),
                size: 0,
                modality: None,
            })
        }
    }

    fn begin(
        archive: &mut SeriesArchive,
        uid: &str,
        number: Option<i64>,
    ) -> Result<(), ArchiveError> {
        archive.begin_instance(instance(uid, Some("MR"), number), None)
    }

    #[test]
    fn instances_are_written_in_arrival_order_under_their_final_names() {
        let entries = Entries::default();
        let written = entries.0.clone();
        let mut archive = SeriesArchive::new(Some(2), Box::new(entries));
        archive
            .begin_instance(instance("1.2", Some("MR"), Some(2)), Some(3))
            .unwrap();
        archive.write(b"ab").unwrap();
        archive.write(b"c").unwrap();
        // Named at once: nothing to rename at the end.
        assert_eq!(written.lock().unwrap()[0].0, "MR_2.dcm");
        begin(&mut archive, "1.1", Some(1)).unwrap();
        archive.write(b"x").unwrap();
        let done = archive.finish().unwrap();
        assert_eq!(done.entries, ["MR_2.dcm", "MR_1.dcm"]);
        assert_eq!(done.modality.as_deref(), Some("MR"));
        assert_eq!(
            *written.lock().unwrap(),
            [
                ("MR_2.dcm".to_string(), Some(3), b"abc".to_vec()),
                ("MR_1.dcm".to_string(), None, b"x".to_vec())
            ]
        );
    }

    #[test]
    fn names_that_depend_on_later_instances_are_decided_at_the_end() {
        let entries = Entries::default();
        let written = entries.0.clone();
        let mut archive = SeriesArchive::new(None, Box::new(entries));
        begin(&mut archive, "1.9", Some(5)).unwrap();
        begin(&mut archive, "1.1", Some(5)).unwrap();
        begin(&mut archive, "1.3", None).unwrap();
        begin(&mut archive, "1.2", None).unwrap();
        let on_arrival: Vec<String> = written
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect();
        assert_eq!(
            on_arrival,
            ["MR_5.dcm", "pending-2", "pending-3", "pending-4"]
        );
        let done = archive.finish().unwrap();
        // The same names as the whole set gives, whatever the order of arrival.
        assert_eq!(
            done.entries,
            [
                "MR_5_2.dcm",
                "MR_5.dcm",
                "MR_unnumbered_2.dcm",
                "MR_unnumbered_1.dcm"
            ]
        );
    }

    #[test]
    fn an_instance_sent_twice_or_a_count_that_differs_is_refused() {
        let mut archive = SeriesArchive::new(Some(2), Box::new(Entries::default()));
        begin(&mut archive, "1.1", Some(1)).unwrap();
        let error = begin(&mut archive, "1.1", Some(1)).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::Inconsistent(m) if m.contains("1.1") && m.contains("twice")),
            "{error:?}"
        );
        let error = archive.finish().unwrap_err();
        assert_eq!(
            error,
            ArchiveError::Inconsistent(
                "the server counts 2 instances in the series (QIDO-RS) but sent 1 (WADO-RS)".into()
            )
        );
        // A server that does not count: what came is the series.
        let mut archive = SeriesArchive::new(None, Box::new(Entries::default()));
        begin(&mut archive, "1.1", Some(1)).unwrap();
        assert_eq!(archive.finish().unwrap().entries, ["MR_1.dcm"]);
    }

    #[test]
    fn the_series_modality_is_the_most_named() {
        let list = |ms: &[Option<&str>]| -> Vec<InstanceListing> {
            ms.iter()
                .enumerate()
                .map(|(i, m)| instance(&format!("1.{i}"), *m, Some(i as i64)))
                .collect()
        };
        assert_eq!(
            modality_of(&list(&[Some("CT"), Some("SR"), Some(" CT ")])).as_deref(),
            Some("CT")
        );
        assert_eq!(
            modality_of(&list(&[Some("MR"), Some("CT")])).as_deref(),
            Some("CT")
        );
        assert_eq!(modality_of(&list(&[None, Some(" ")])), None);
    }
}
