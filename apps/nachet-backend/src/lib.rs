//! The Nachet backend: wires adapters to the domain's ports and serves the REST API.
//!
//! [`start`] is the whole wiring, in order: database (migrated), blob storage, reference
//! model servers (when enabled), the pipeline catalogue version (recorded in the database;
//! [`catalogue`]), the seed use cases, the DICOM series workers and ML app
//! ([`series_wiring`]), then the HTTP server. Nothing in this crate holds business rules.

mod catalogue;
pub mod config;
pub mod http;
mod reference_catalogue;
pub mod series_wiring;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use inference::{
    Admission, AdmissionSettings, CodecPool, DatasetService, FeedbackService, FolderPorts,
    FolderService, InferenceService, Ports, ServiceSettings,
};
use reference_models::ReferenceModels;
use secrecy::ExposeSecret;
use sql_store::SqlStore;

pub use config::Settings;
pub use reference_catalogue::reference_catalogue;

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
    /// `http://host:port`, with the port actually bound.
    pub url: String,
    pub store: Arc<SqlStore>,
    pub blobs: Arc<dyn datastore::BlobStore>,
    pub inference: Arc<InferenceService>,
    pub folders: Arc<FolderService>,
    /// The reference model servers, when the settings start them.
    pub reference_models: Option<ReferenceModels>,
    /// DICOM series predictions: the service, the workers, the reference ML app.
    pub series: series_wiring::SeriesRuntime,
    /// Follows the catalogue version chosen for every replica.
    catalogue_follower: (
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ),
    server: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Backend {
    /// Waits until the server stops (on Ctrl-C / SIGTERM, handled by actix).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.task.await.context("the HTTP server task failed")?;
        let _ = self.catalogue_follower.0.send(true);
        let _ = self.catalogue_follower.1.await;
        self.series.stop().await;
        if let Some(models) = self.reference_models {
            models.stop().await;
        }
        Ok(result?)
    }

    /// Stops accepting requests, lets those in flight finish, and stops the reference models.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
        let _ = self.catalogue_follower.0.send(true);
        let _ = self.catalogue_follower.1.await;
        self.series.stop().await;
        if let Some(models) = self.reference_models {
            models.stop().await;
        }
    }
}

pub async fn start(settings: Settings) -> anyhow::Result<Backend> {
    let (store, blobs) = open_storage(&settings).await?;

    let reference_models = if settings.reference_models.enabled {
        let mut options = reference_models::Options::new(
            settings.reference_models.api_key.expose_secret().to_owned(),
        );
        if let Some(port) = settings.reference_models.port {
            options = options.with_port(port);
        }
        let models = reference_models::start(options)
            .await
            .context("cannot start the reference model servers")?;
        tracing::info!(url = %models.url, "reference model servers started (not trained models)");
        Some(models)
    } else {
        None
    };

    let catalogues = Arc::new(
        catalogue::load_at_start(
            &settings,
            store.clone(),
            store.clone(),
            reference_models.as_ref(),
        )
        .await?,
    );
    let registry = catalogues.registry().clone();
    let (stop_following, following) = tokio::sync::watch::channel(false);
    let catalogue_follower = tokio::spawn({
        let catalogues = catalogues.clone();
        let every = std::time::Duration::from_secs(settings.catalogue_poll_seconds);
        async move { catalogues.follow(every, following).await }
    });
    let catalogue_registry = registry.clone();

    let limits = inference::PictureLimits {
        max_pixels: settings.inference.max_picture_pixels,
    };
    let codec = match settings.inference.codec_threads {
        0 => CodecPool::per_core(limits),
        n => CodecPool::new(n, limits),
    };
    let inference = Arc::new(InferenceService::new(
        registry,
        Ports {
            models: Arc::new(model_http::HttpModelClient::new()),
            users: store.clone(),
            seeds: store.clone(),
            inferences: store.clone(),
            folders: store.clone(),
            blobs: blobs.clone(),
        },
        codec.clone(),
        ServiceSettings {
            max_crop_calls: settings.inference.max_crop_calls,
            register_unknown_users: settings.users.register_unknown,
        },
    ));
    let admission = web::Data::new(Admission::new(admission_settings(&settings.inference)));

    let folders = Arc::new(FolderService::new(
        FolderPorts {
            folders: store.clone(),
            inferences: store.clone(),
            users: store.clone(),
            seeds: store.clone(),
            blobs: blobs.clone(),
        },
        codec,
        settings.folders.clone(),
    ));
    let feedback = web::Data::new(FeedbackService::new(store.clone(), store.clone()));
    let dataset = web::Data::new(DatasetService::new(
        store.clone(),
        store.clone(),
        blobs.clone(),
    ));
    // Blobs of deletions that an earlier run could not finish.
    match folders.delete_queued_blobs().await {
        Ok(0) => {}
        Ok(left) => tracing::warn!(
            left,
            "some blobs of deleted folders could not be deleted yet"
        ),
        Err(error) => tracing::warn!(%error, "could not read the blobs queued for deletion"),
    }
    if let http::identity::IdentitySettings::Vouch { secret, .. } = &settings.identity
        && secret.expose_secret().trim().is_empty()
    {
        anyhow::bail!("identity.secret is empty: set it to the login proxy's JWT secret");
    }
    if let http::identity::IdentitySettings::Development { email } = &settings.identity {
        tracing::warn!(
            %email,
            "identity.mode is development: there is no authentication, every request is this user; \
             set identity.mode to vouch or header before anyone else can reach the backend"
        );
    }
    let series_access = web::Data::new(
        http::series_access::SeriesAccess::new(&settings.series.access)
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
    let cors = http::cors::CorsPolicy::new(&settings.cors.allowed_origins)?;

    let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (settings server.host, server.port)",
                settings.server.host, settings.server.port
            )
        })?;
    let address = listener.local_addr()?;
    let series =
        series_wiring::start(&settings.series, &settings.data_dir, store.clone(), address).await?;
    let series_data = series.api.clone();
    let api_doc = http::ApiDoc::for_server(&series.service.ml_apps().model_types());
    let body_limit = settings.server.max_body_bytes;
    let inference_data = web::Data::from(inference.clone());
    let folders_data = web::Data::from(folders.clone());
    let identity_data = web::Data::new(settings.identity.clone());
    let fallback = web::Data::new(http::fallback::Routes::from_openapi());
    let admin_data = web::Data::new(http::admin::AdminApi::new(catalogues));
    let admin_token = web::Data::new(http::admin::AdminToken::new(&settings.admin));
    let ops = web::Data::new(http::ops::Ops::new(
        store.clone(),
        blobs.clone(),
        catalogue_registry,
        admission.clone().into_inner(),
        series.service.clone(),
    ));
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(http::ops::observe))
            .wrap(tracing_actix_web::TracingLogger::default())
            .app_data(ops.clone())
            .app_data(inference_data.clone())
            .app_data(admission.clone())
            .app_data(web::Data::new(http::body::BodyLimit(body_limit)))
            .app_data(folders_data.clone())
            .app_data(feedback.clone())
            .app_data(dataset.clone())
            .app_data(identity_data.clone())
            .app_data(admin_data.clone())
            .app_data(admin_token.clone())
            .app_data(series_data.clone())
            .app_data(series_access.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                http::error::ApiError::bad_request(format!("the query is not valid: {e}")).into()
            }))
            .configure(|config| http::routes(config, api_doc.clone()))
            .app_data(fallback.clone())
            .default_service(web::to(
                |request: actix_web::HttpRequest, routes: web::Data<http::fallback::Routes>| async move {
                    routes.answer(&request)
                },
            ))
            // Outermost, so that every answer carries CORS headers, errors included.
            .wrap(cors.middleware())
    })
    .on_connect(http::disconnect::on_connect)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    let url = format!("http://{address}");
    tracing::info!(%url, "listening");
    Ok(Backend {
        url,
        store,
        blobs,
        inference,
        folders,
        reference_models,
        series,
        catalogue_follower: (stop_following, catalogue_follower),
        server: handle,
        task,
    })
}

/// `/inf` admission from the settings: four requests per core worked on by default, enough
/// to keep the codec pool busy while others wait for their models.
fn admission_settings(inference: &config::InferenceSettings) -> AdmissionSettings {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    AdmissionSettings {
        working: match inference.max_in_flight {
            0 => 4 * cores,
            n => n,
        },
        queue_requests: inference.queue_requests,
        queue_bytes: inference.queue_bytes,
        max_wait: std::time::Duration::from_secs(inference.queue_wait_seconds),
        retry_after: std::time::Duration::from_secs(inference.retry_after_seconds.max(1)),
    }
}
