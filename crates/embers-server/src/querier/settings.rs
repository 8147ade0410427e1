//! Connect `settings.v1.SettingsService` (`Get`, `Set`, `Delete`): the per-tenant
//! key/value settings Profiles Drilldown reads at start-up (and writes from its settings
//! page, e.g. `pluginSettings`). Kept in `settings.json` in the data directory, written
//! to a temporary file and renamed, so a crash leaves the old or the new settings.
//!
//! As Grafana Pyroscope does, a `Set` older than the stored value (by `modifiedAt`) is
//! refused, and `Set` without `modifiedAt` stamps the server's time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{connect, unary, Answer};
use crate::error::ApiError;
use crate::grafana_proto::settings::v1 as s;
use crate::tenants::Tenant;

/// Most settings kept, and the longest name and value: settings are small UI choices.
const MAX_SETTINGS: usize = 1024;
const MAX_NAME: usize = 256;
const MAX_VALUE: usize = 64 << 10;

/// The settings store.
#[derive(Debug)]
pub struct Settings {
    path: PathBuf,
    values: Mutex<BTreeMap<String, s::Setting>>,
}

impl Settings {
    /// Loads `settings.json` from `data_dir` (none yet: empty). A file that does not
    /// parse is kept aside as `settings.json.bad` and the settings start empty.
    pub fn open(data_dir: &std::path::Path) -> Settings {
        let path = data_dir.join("settings.json");
        let values = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<s::Setting>>(&bytes) {
                Ok(list) => list.into_iter().map(|x| (x.name.clone(), x)).collect(),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "settings file does not parse; kept aside");
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Settings {
            path,
            values: Mutex::new(values),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, s::Setting>> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, values: &BTreeMap<String, s::Setting>) -> Result<(), ApiError> {
        let list: Vec<&s::Setting> = values.values().collect();
        let bytes = serde_json::to_vec(&list).map_err(ApiError::internal)?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| ApiError::internal(format_args!("writing {}: {e}", self.path.display())))
    }
}

/// `POST /settings.v1.SettingsService/{method}`.
pub async fn call(
    state: Tenant,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    match method.as_str() {
        "Get" => unary(&state, &headers, &body, get).await,
        // Writes go to the tenant's own settings, its store created if need be.
        "Set" => unary(&state.writable().await?, &headers, &body, set).await,
        "Delete" => match state.id.is_default() || state.tenants.get(&state.id).is_some() {
            true => unary(&state, &headers, &body, delete).await,
            // Nothing to delete for a tenant without data; nothing is created.
            false => {
                unary(
                    &state,
                    &headers,
                    &body,
                    |_, _: s::DeleteSettingsRequest| async {
                        Ok(s::DeleteSettingsResponse {}.into())
                    },
                )
                .await
            }
        },
        other => Err(connect::unimplemented(format!(
            "settings.v1.SettingsService/{other} is not implemented"
        ))),
    }
}

async fn get(
    state: Tenant,
    _req: s::GetSettingsRequest,
) -> Result<Answer<s::GetSettingsResponse>, ApiError> {
    let settings = state.data.settings.lock().values().cloned().collect();
    Ok(s::GetSettingsResponse { settings }.into())
}

async fn set(
    state: Tenant,
    req: s::SetSettingsRequest,
) -> Result<Answer<s::SetSettingsResponse>, ApiError> {
    let Some(mut setting) = req.setting else {
        return Err(ApiError::bad_request("setting: missing"));
    };
    if setting.name.is_empty() || setting.name.len() > MAX_NAME || setting.value.len() > MAX_VALUE {
        return Err(ApiError::bad_request(format!(
            "setting: a name of 1 to {MAX_NAME} bytes and a value of at most {MAX_VALUE} bytes"
        )));
    }
    if setting.modified_at <= 0 {
        setting.modified_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
    }
    let mut values = state.data.settings.lock();
    if let Some(old) = values.get(&setting.name) {
        if old.modified_at > setting.modified_at {
            return Err(ApiError::bad_request(format!(
                "setting {:?}: newer value stored (modifiedAt {} > {})",
                setting.name, old.modified_at, setting.modified_at
            )));
        }
    } else if values.len() >= MAX_SETTINGS {
        return Err(ApiError::too_many(format!(
            "at most {MAX_SETTINGS} settings are kept"
        )));
    }
    let mut next = values.clone();
    next.insert(setting.name.clone(), setting.clone());
    state.data.settings.save(&next)?;
    *values = next;
    Ok(s::SetSettingsResponse {
        setting: Some(setting),
    }
    .into())
}

async fn delete(
    state: Tenant,
    req: s::DeleteSettingsRequest,
) -> Result<Answer<s::DeleteSettingsResponse>, ApiError> {
    let mut values = state.data.settings.lock();
    if values.contains_key(&req.name) {
        let mut next = values.clone();
        next.remove(&req.name);
        state.data.settings.save(&next)?;
        *values = next;
    }
    Ok(s::DeleteSettingsResponse {}.into())
}
