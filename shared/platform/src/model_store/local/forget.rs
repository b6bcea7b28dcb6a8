//! [`ModelStore::forget_user`](super::ModelStore::forget_user) on the local store: the user's
//! row is cut out of every version's `users.json`, `user_factors.f32` and `user_top.json`
//! (each rewritten atomically, `meta.json` last), and the history log is folded into a
//! snapshot without the user, so no file under `models/` names them afterwards.

use std::path::Path;

use super::{
    f32s_to_le, io, json_opt, le_to_f32s, read_opt, to_json, write_atomic, LocalModelStore,
    ModelStoreError, Scored, VersionMeta,
};
use crate::model_store::ForgetReport;

impl LocalModelStore {
    pub(super) fn forget_blocking(
        &self,
        site: &str,
        user: &str,
    ) -> Result<ForgetReport, ModelStoreError> {
        let mut report = ForgetReport {
            // The rejected items (negative feedback) go with the history they are kept beside.
            history_items: self.forget_list(site, super::HISTORY_LIST, user)?
                + self.forget_list(site, super::REJECTED_LIST, user)?,
            ..ForgetReport::default()
        };
        let site_dir = self.root.join(format!("site={site}"));
        let entries = match std::fs::read_dir(&site_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(io(&site_dir)(e)),
        };
        for e in entries {
            let e = e.map_err(io(&site_dir))?;
            let name = e.file_name();
            let Some(model) = name.to_str().and_then(|n| n.strip_prefix("model=")) else {
                continue;
            };
            for version in self.versions(site, model)? {
                let dir = self.version_dir(site, model, version);
                let (factors, top) = forget_in_version(&dir, user)?;
                if factors || top {
                    report.factors += usize::from(factors);
                    report.top_lists += usize::from(top);
                    report.add_version(model, version);
                    self.users.lock().expect("cache lock").remove(&(
                        site.to_string(),
                        model.to_string(),
                        version,
                    ));
                }
            }
        }
        Ok(report)
    }

    /// Drops the user's per-user `list` (history, rejected items) and rewrites its snapshot
    /// without them (the log, which may hold their older lines, is removed once the snapshot
    /// is in place).
    fn forget_list(&self, site: &str, list: &str, user: &str) -> Result<usize, ModelStoreError> {
        self.with_history(site, list, |h| {
            let removed = h.users.remove(user);
            let log = self.history_log_path(site, list);
            if removed.is_none() && !log.exists() {
                return Ok(0);
            }
            write_atomic(&self.history_path(site, list), &to_json(&h.users))?;
            match std::fs::remove_file(&log) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&log)(e)),
            }
            h.log_lines = 0;
            Ok(removed.map_or(0, |items| items.len()))
        })
    }
}

/// Cuts `user`'s row out of one version directory; returns (had factors, had a top list).
fn forget_in_version(dir: &Path, user: &str) -> Result<(bool, bool), ModelStoreError> {
    let Some(mut meta) = json_opt::<VersionMeta>(&dir.join("meta.json"))? else {
        return Ok((false, false));
    };
    let Some(mut ids) = json_opt::<Vec<String>>(&dir.join("users.json"))? else {
        return Ok((false, false));
    };
    let Some(row) = ids.iter().position(|u| u == user) else {
        return Ok((false, false));
    };
    ids.remove(row);
    let mut had = (false, false);
    if let Some(dim) = meta.user_dim {
        let p = dir.join("user_factors.f32");
        if let Some(mut data) = read_opt(&p)?.and_then(|b| le_to_f32s(&b)) {
            if data.len() >= (row + 1) * dim {
                data.drain(row * dim..(row + 1) * dim);
                write_atomic(&p, &f32s_to_le(&data))?;
                had.0 = true;
            }
        }
    }
    if meta.has_user_top {
        let p = dir.join("user_top.json");
        if let Some(mut top) = json_opt::<Vec<Vec<Scored>>>(&p)? {
            if row < top.len() {
                top.remove(row);
                write_atomic(&p, &to_json(&top))?;
                had.1 = true;
            }
        }
    }
    write_atomic(&dir.join("users.json"), &to_json(&ids))?;
    meta.users = ids.len();
    write_atomic(&dir.join("meta.json"), &to_json(&meta))?;
    Ok(had)
}
