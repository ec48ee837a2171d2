//! Test doubles shared by the contract tests: an in-memory store that keeps the port
//! contracts (revision checks, claims with leases), a clock that tests move, and scratch
//! folders that remember where they were.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dicom_series::ports::{
    Archive, ArchiveError, ArchiveWriter, DicomCredentials, DicomServer, FetchError,
    InstanceListing, MlAppEndpoint, SeriesArchive, SeriesKey, SeriesListing,
};
use dicom_series::*;
use uuid::Uuid;

pub const MODEL: &str = "brain_tumor_classification";
pub const APP: &str = "reference";

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// A clock that moves only when told.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(t0())))
    }
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub series_id: SeriesId,
    pub phase: JobPhase,
    pub run_after: DateTime<Utc>,
    pub claims: u32,
    pub lease: Option<(ClaimToken, DateTime<Utc>, String)>,
}

#[derive(Default)]
pub struct State {
    pub organizations: Vec<Organization>,
    pub series: HashMap<SeriesId, Series>,
    pub jobs: HashMap<RunId, JobRow>,
}

/// The repository and queue ports in memory, with the semantics the SQL adapter has.
#[derive(Clone, Default)]
pub struct MemoryStore(pub Arc<Mutex<State>>);

impl MemoryStore {
    pub fn series(&self, id: SeriesId) -> Series {
        self.0.lock().unwrap().series[&id].clone()
    }
    pub fn only_series(&self) -> Series {
        let state = self.0.lock().unwrap();
        assert_eq!(state.series.len(), 1);
        state.series.values().next().unwrap().clone()
    }
    pub fn job(&self, run: RunId) -> Option<JobRow> {
        self.0.lock().unwrap().jobs.get(&run).cloned()
    }
    pub fn job_count(&self) -> usize {
        self.0.lock().unwrap().jobs.len()
    }
    /// Writes a series directly, as another process would.
    pub fn put_series(&self, series: Series) {
        self.0.lock().unwrap().series.insert(series.id, series);
    }
}

#[async_trait]
impl OrganizationRepository for MemoryStore {
    async fn create_organization(
        &self,
        organization: &Organization,
    ) -> Result<(), CreateOrganizationError> {
        let mut state = self.0.lock().unwrap();
        if state
            .organizations
            .iter()
            .any(|o| o.name == organization.name)
        {
            return Err(CreateOrganizationError::DuplicateName(
                organization.name.to_string(),
            ));
        }
        state.organizations.push(organization.clone());
        Ok(())
    }
    async fn find_organization(
        &self,
        id: OrganizationId,
    ) -> Result<Option<Organization>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .organizations
            .iter()
            .find(|o| o.id == id)
            .cloned())
    }
    async fn find_organization_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .organizations
            .iter()
            .find(|o| o.name.as_str() == name)
            .cloned())
    }
    async fn organization_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .organizations
            .iter()
            .map(|o| o.name.to_string())
            .collect();
        names.sort();
        Ok(names)
    }
}

fn write_series(state: &mut State, series: &Series) -> Result<(), UpdateSeriesError> {
    let stored = state
        .series
        .get_mut(&series.id)
        .ok_or_else(|| StoreError("no such series".into()))?;
    if stored.revision != series.revision {
        return Err(UpdateSeriesError::Stale);
    }
    let mut next = series.clone();
    next.revision += 1;
    *stored = next;
    Ok(())
}

#[async_trait]
impl SeriesRepository for MemoryStore {
    async fn find_series(&self, id: SeriesId) -> Result<Option<Series>, StoreError> {
        Ok(self.0.lock().unwrap().series.get(&id).cloned())
    }
    async fn find_or_insert_series(&self, series: &Series) -> Result<Series, StoreError> {
        let mut state = self.0.lock().unwrap();
        if let Some(found) = state
            .series
            .values()
            .find(|s| s.organization_id == series.organization_id && s.key == series.key)
        {
            return Ok(found.clone());
        }
        state.series.insert(series.id, series.clone());
        Ok(series.clone())
    }
    async fn update_series(&self, series: &Series) -> Result<(), UpdateSeriesError> {
        write_series(&mut self.0.lock().unwrap(), series)
    }
    async fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<Series>, StoreError> {
        let state = self.0.lock().unwrap();
        let mut found: Vec<Series> = state
            .series
            .values()
            .filter(|s| filter.organization.is_none_or(|o| s.organization_id == o))
            .filter(|s| {
                filter
                    .study_instance_uid
                    .as_ref()
                    .is_none_or(|u| &s.key.study_instance_uid == u)
            })
            .filter(|s| filter.state.is_none_or(|st| s.state == st))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.0.cmp(&b.id.0)));
        Ok(found
            .into_iter()
            .skip(filter.offset as usize)
            .take(filter.limit as usize)
            .collect())
    }
    async fn count_by_state(&self) -> Result<Vec<(PredictionState, u64)>, StoreError> {
        let mut counts: Vec<(PredictionState, u64)> = Vec::new();
        for series in self.0.lock().unwrap().series.values() {
            match counts.iter_mut().find(|(state, _)| *state == series.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((series.state, 1)),
            }
        }
        Ok(counts)
    }
    async fn update_series_and_enqueue(
        &self,
        series: &Series,
        job: &NewJob,
    ) -> Result<(), UpdateSeriesError> {
        let mut state = self.0.lock().unwrap();
        write_series(&mut state, series)?;
        state.jobs.insert(
            job.run_id,
            JobRow {
                series_id: job.series_id,
                phase: JobPhase::Send,
                run_after: job.run_after,
                claims: 0,
                lease: None,
            },
        );
        Ok(())
    }
}

fn held<'a>(state: &'a mut State, job: &ClaimedJob) -> Result<&'a mut JobRow, LeaseError> {
    match state.jobs.get_mut(&job.run_id) {
        Some(row) if matches!(&row.lease, Some((token, _, _)) if *token == job.token) => Ok(row),
        _ => Err(LeaseError::Lost),
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let mut state = self.0.lock().unwrap();
        let due = state
            .jobs
            .iter_mut()
            .filter(|(_, row)| {
                row.run_after <= now && row.lease.as_ref().is_none_or(|(_, until, _)| *until <= now)
            })
            .min_by_key(|(_, row)| row.run_after);
        let Some((run_id, row)) = due else {
            return Ok(None);
        };
        let token = ClaimToken(Uuid::new_v4());
        row.claims += 1;
        row.lease = Some((token, lease_until, worker.to_string()));
        Ok(Some(ClaimedJob {
            run_id: *run_id,
            series_id: row.series_id,
            phase: row.phase,
            claims: row.claims,
            token,
            lease_until,
        }))
    }
    async fn extend_lease(
        &self,
        job: &ClaimedJob,
        lease_until: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let mut state = self.0.lock().unwrap();
        let row = held(&mut state, job)?;
        if let Some((_, until, _)) = &mut row.lease {
            *until = lease_until;
        }
        Ok(())
    }
    async fn release(
        &self,
        job: &ClaimedJob,
        phase: JobPhase,
        run_after: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let mut state = self.0.lock().unwrap();
        let row = held(&mut state, job)?;
        row.phase = phase;
        row.run_after = run_after;
        row.lease = None;
        Ok(())
    }
    async fn complete(&self, job: &ClaimedJob) -> Result<(), LeaseError> {
        let mut state = self.0.lock().unwrap();
        held(&mut state, job)?;
        state.jobs.remove(&job.run_id);
        Ok(())
    }
    async fn discard_waiting(&self, run: RunId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.0.lock().unwrap();
        let free = state
            .jobs
            .get(&run)
            .is_some_and(|row| row.lease.as_ref().is_none_or(|(_, until, _)| *until <= now));
        if free {
            state.jobs.remove(&run);
        }
        Ok(())
    }
}

/// Scratch folders in one test folder, remembered so a test can check they are gone.
#[derive(Clone)]
pub struct TrackedScratch {
    pub root: Arc<tempfile::TempDir>,
    pub created: Arc<Mutex<Vec<PathBuf>>>,
}

impl TrackedScratch {
    pub fn new() -> Self {
        Self {
            root: Arc::new(tempfile::tempdir().unwrap()),
            created: Arc::default(),
        }
    }
    pub fn created(&self) -> Vec<PathBuf> {
        self.created.lock().unwrap().clone()
    }
    /// Every folder handed out has been removed.
    pub fn assert_all_removed(&self) {
        for path in self.created() {
            assert!(!path.exists(), "{} was left behind", path.display());
        }
    }
}

#[async_trait]
impl ScratchSpace for TrackedScratch {
    async fn create(&self, label: &str) -> Result<ScratchDir, ScratchError> {
        let dir = tempfile::Builder::new()
            .prefix(label)
            .tempdir_in(self.root.path())
            .map_err(|e| ScratchError(e.to_string()))?;
        let path = dir.path().to_path_buf();
        self.created.lock().unwrap().push(path.clone());
        Ok(ScratchDir::new(path, dir))
    }
}

pub fn organization(name: &str) -> Organization {
    Organization::new(
        name,
        "http://pacs.test/dicom-web",
        DicomCredentials::None,
        t0(),
    )
    .unwrap()
}

pub fn ml_apps() -> MlAppDirectory {
    MlAppDirectory::new(vec![MlAppRoute {
        name: APP.into(),
        endpoint: MlAppEndpoint {
            url: "http://ml.test".into(),
        },
        model_types: vec![MODEL.into(), "chest_xray_classification".into()],
    }])
    .unwrap()
}

pub fn key(series: &str) -> SeriesKey {
    series_key("1.2.3", series).unwrap()
}

pub fn predict_request(organization: &str, series: &str, again: bool) -> PredictRequest {
    PredictRequest {
        organization: organization.into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: series.into(),
        model_type: MODEL.into(),
        predict_again: again,
        body_part: None,
    }
}

/// What the source reads from the headers of `n` CT instances numbered 1..=n.
pub fn listing(n: usize) -> Vec<InstanceListing> {
    listing_of(n, Some("CT"))
}

pub fn listing_of(n: usize, modality: Option<&str>) -> Vec<InstanceListing> {
    (0..n)
        .map(|i| InstanceListing {
            sop_instance_uid: format!("1.2.3.4.{i}"),
            instance_number: Some(i as i64 + 1),
            modality: modality.map(str::to_string),
        })
        .collect()
}

/// The series search's answer for series `1.2.3.4`: `n` instances of `modality`.
pub fn found(n: u32, modality: Option<&str>) -> SeriesListing {
    SeriesListing {
        series_instance_uid: "1.2.3.4".into(),
        modality: modality.map(str::to_string),
        number_of_instances: Some(n),
        ..Default::default()
    }
}

/// Retrieves `instances` into `archive`, in that order (a few bytes each, announced), and
/// finishes it, as a DICOM source does.
pub fn feed(
    mut archive: SeriesArchive,
    instances: Vec<InstanceListing>,
) -> Result<Archive, FetchError> {
    for instance in instances {
        archive.begin_instance(instance, Some(4))?;
        archive.write(b"DI")?;
        archive.write(b"CM")?;
    }
    Ok(archive.finish()?)
}

/// A stand-in archive written into a folder: a `.partial` file while written, renamed
/// when finished, removed when dropped unfinished (as the ZIP archiver does). Its entries
/// take the names `finish` is given.
pub struct StandInWriter {
    partial: PathBuf,
    done: PathBuf,
    file_name: String,
    entries: Vec<String>,
    finished: bool,
}

impl ArchiveWriter for StandInWriter {
    fn start_entry(&mut self, name: &str, _: Option<u64>) -> Result<(), ArchiveError> {
        self.entries.push(name.to_string());
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.partial)
            .map_err(|e| ArchiveError::Write(e.to_string()))?;
        file.write_all(bytes)
            .map_err(|e| ArchiveError::Write(e.to_string()))
    }
    fn finish(mut self: Box<Self>, names: &[String]) -> Result<Archive, ArchiveError> {
        assert_eq!(
            names.len(),
            self.entries.len(),
            "one final name per entry written: {names:?} for {:?}",
            self.entries
        );
        std::fs::rename(&self.partial, &self.done).unwrap();
        self.finished = true;
        Ok(Archive {
            path: self.done.clone(),
            file_name: self.file_name.clone(),
            entries: names.to_vec(),
            size: std::fs::metadata(&self.done).unwrap().len(),
            modality: None,
        })
    }
}

impl Drop for StandInWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// A stand-in archive of `key` in `dir`.
pub fn stand_in(key: &SeriesKey, dir: &std::path::Path) -> Box<dyn ArchiveWriter> {
    let file_name = format!(
        "dicom_{}_{}.zip",
        key.study_instance_uid, key.series_instance_uid
    );
    let partial = dir.join(format!(".{file_name}.partial"));
    std::fs::write(&partial, b"").unwrap();
    Box::new(StandInWriter {
        partial,
        done: dir.join(&file_name),
        file_name,
        entries: Vec::new(),
        finished: false,
    })
}

pub fn server_of(organization: &Organization) -> DicomServer {
    organization.dicom_server.clone()
}

/// A caller who belongs to every organization.
pub fn dev() -> Member {
    Member::development("tester")
}
