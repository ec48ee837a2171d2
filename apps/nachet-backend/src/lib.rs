//! The Nachet backend: wires adapters to the domain's ports and serves the REST API.
//!
//! [`start`] is the whole production path, in order: the settings checked (nothing a
//! deployment must give is missing), database (migrated) and blob storage, the pipeline
//! catalogue version ([`catalogue`]), the seeds area ([`seeds`]), the series area
//! ([`series`]), then the HTTP server ([`http::serve`]). No development stand-in is linked
//! here: `apps/nachet-dev` starts those and hands this crate ordinary settings. Nothing in
//! this crate holds business rules.

mod catalogue;
pub mod config;
pub mod http;
pub mod metrics;
pub mod seeds;
pub mod series;
pub mod work;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::web;
use anyhow::Context;
use secrecy::ExposeSecret;
use sql_store::SqlStore;

pub use config::Settings;
/// The database (migrated) and blob storage the settings name.
async fn open_storage(
    settings: &Settings,
) -> anyhow::Result<(Arc<SqlStore>, Arc<dyn datastore::BlobStore>)> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            settings.data_dir.display()
        )
    })?;
    let store = SqlStore::connect(settings.database.url.expose_secret())
        .await
        .context("cannot open the database (setting database.url)")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let blobs: Arc<dyn datastore::BlobStore> = Arc::new(
        blob_store::open(&settings.blob).context("cannot open blob storage (settings blob.*)")?,
    );
    Ok((Arc::new(store), blobs))
}

/// `nachet-backend export-dataset`: the verified dataset as a ZIP file, from the database
/// and blob storage of the settings (the server need not run).
pub async fn export_dataset(
    settings: &Settings,
    user_email: Option<&str>,
    mut filter: datastore::DatasetFilter,
    out: std::path::PathBuf,
) -> anyhow::Result<inference::ExportSummary> {
    use datastore::UserStore;
    let (store, blobs) = open_storage(settings).await?;
    if let Some(email) = user_email {
        let email = email.trim().to_lowercase();
        let user = store
            .find_by_email(&email)
            .await?
            .with_context(|| format!("no user {email}"))?;
        filter.user_id = Some(user.id);
    }
    let file = std::fs::File::create_new(&out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    let dataset = inference::DatasetService::new(store.clone(), store, blobs);
    let runtime = tokio::runtime::Handle::current();
    // The ZIP writer blocks: the export runs on a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut sink = dataset_zip::ZipSink::new(std::io::BufWriter::new(file));
        runtime.block_on(dataset.export(filter, &mut sink))
    })
    .await
    .context("the export thread failed")?
    .context("the export failed")
}

/// A running backend. Dropping it does not stop it: call [`Backend::stop`].
pub struct Backend {
    url: String,
    series: series::SeriesRuntime,
    /// Follows the catalogue version chosen for every replica.
    catalogue_follower: (
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ),
    server: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Backend {
    /// `http://host:port`, with the port actually bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits until the server stops (on Ctrl-C / SIGTERM, handled by actix).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.task.await.context("the HTTP server task failed")?;
        let _ = self.catalogue_follower.0.send(true);
        let _ = self.catalogue_follower.1.await;
        self.series.stop().await;
        Ok(result?)
    }

    /// Stops accepting requests, lets those in flight finish, and stops the workers.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
        let _ = self.catalogue_follower.0.send(true);
        let _ = self.catalogue_follower.1.await;
        self.series.stop().await;
    }
}

/// The listener the settings name (`server.host`, `server.port`).
pub fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    TcpListener::bind((settings.server.host.as_str(), settings.server.port)).with_context(|| {
        format!(
            "cannot listen on {}:{} (settings server.host, server.port)",
            settings.server.host, settings.server.port
        )
    })
}

/// Checks the settings, wires everything and serves on the listener the settings name.
pub async fn start(settings: Settings) -> anyhow::Result<Backend> {
    check(&settings)?;
    let listener = bind(&settings)?;
    serve(listener, settings).await
}

/// As [`start`], on a listener the caller bound (whoever must know the address first, e.g.
/// an ML app that calls back).
pub async fn start_on(listener: TcpListener, settings: Settings) -> anyhow::Result<Backend> {
    check(&settings)?;
    serve(listener, settings).await
}

/// The wiring, on checked settings.
async fn serve(listener: TcpListener, settings: Settings) -> anyhow::Result<Backend> {
    let (store, blobs) = open_storage(&settings).await?;

    let catalogues =
        Arc::new(catalogue::load_at_start(&settings, store.clone(), store.clone()).await?);
    let registry = catalogues.registry().clone();
    let (stop_following, following) = tokio::sync::watch::channel(false);
    let catalogue_follower = tokio::spawn({
        let catalogues = catalogues.clone();
        let every = std::time::Duration::from_secs(settings.catalogue_poll_seconds);
        async move { catalogues.follow(every, following).await }
    });

    let metrics = Arc::new(metrics::Metrics::new());
    let seeds = seeds::start(
        &settings,
        registry.clone(),
        store.clone(),
        blobs.clone(),
        metrics.clone(),
    )
    .await?;
    let identity = settings
        .identity
        .clone()
        .context("identity.mode is not set")?;
    match &identity {
        http::identity::IdentitySettings::Vouch { secret, .. }
            if secret.expose_secret().trim().is_empty() =>
        {
            anyhow::bail!("identity.secret is empty: set it to the login proxy's JWT secret");
        }
        http::identity::IdentitySettings::Development { email } => tracing::warn!(
            %email,
            "identity.mode is development: there is no authentication, every request is this user; \
             set identity.mode to vouch or header before anyone else can reach the backend"
        ),
        _ => {}
    }
    let access = settings
        .series
        .access
        .as_ref()
        .context("series.access.mode is not set")?;
    let series_access = web::Data::new(
        http::series_access::SeriesAccess::new(access)
            .map_err(|e| anyhow::anyhow!("invalid settings series.access: {e}"))?,
    );
    if let Some(user) = series_access.development_user() {
        tracing::warn!(
            %user,
            "series.access.mode is development: the radiologist's routes take no token, every \
             caller is this user, a member of every organization; set \
             series.access.mode to jwt before anyone else can reach the backend"
        );
    }
    let series = series::start(
        &settings.series,
        &settings.data_dir,
        store.clone(),
        metrics.clone(),
    )
    .await?;

    let address = listener.local_addr()?;
    let services = http::Services {
        ops: web::Data::new(http::ops::Ops::new(
            store.clone(),
            blobs.clone(),
            registry,
            seeds.admission.clone().into_inner(),
            seeds.codec.clone(),
            series.service.clone(),
            metrics,
        )),
        seeds,
        series: series.api.clone(),
        series_access,
        identity: web::Data::new(identity),
        admin: web::Data::new(http::admin::AdminApi::new(catalogues)),
        admin_token: web::Data::new(http::admin::AdminToken::new(&settings.admin)),
        cors: http::cors::CorsPolicy::new(&settings.cors.allowed_origins)?,
        api_doc: http::ApiDoc::for_server(&series.service.ml_apps().model_types()),
        body_limit: settings.server.max_body_bytes,
    };
    let server = http::serve(listener, services)?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    let url = format!("http://{address}");
    tracing::info!(%url, "listening");
    Ok(Backend {
        url,
        series,
        catalogue_follower: (stop_following, catalogue_follower),
        server: handle,
        task,
    })
}

/// Refuses settings that miss what a deployment must give, naming each.
fn check(settings: &Settings) -> anyhow::Result<()> {
    let missing = settings.missing();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the settings miss what the server needs (set them in the file named by NACHET_CONFIG \
         or as NACHET__SECTION__KEY variables; `cargo run -p nachet-dev` runs a development \
         backend with stand-ins for all of them):\n  - {}",
        missing.join("\n  - ")
    )
}
