//! What the plan-driven commands (`run`, `status`, `drill`, `plan`) share: finding and loading the
//! plan file, and turning its `[repository]` section into the global options every command takes.

use std::path::{Path, PathBuf};

use anyhow::Result;

use cairn::plan::{self, Plan};

use super::GlobalArgs;

/// The `--plan` option.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlanFileArg {
    /// The plan file (default: $CAIRN_PLAN, else /etc/cairn/plan.toml for root, else
    /// ~/.config/cairn/plan.toml).
    #[arg(long = "plan", value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

impl PlanFileArg {
    /// The plan, which must exist.
    pub fn required(&self) -> Result<(PathBuf, Plan)> {
        let path = self.plan.clone().unwrap_or_else(plan::default_plan_path);
        let plan = Plan::load(&path)?;
        Ok((path, plan))
    }

    /// The global options with the plan's repository when `--plan` names one (see
    /// [`global_for`]), and that plan; without `--plan`, `global` as it is. For the commands
    /// PostgreSQL runs, where a plan is used only when named.
    pub fn global_for(&self, global: &GlobalArgs) -> Result<(GlobalArgs, Option<Plan>)> {
        Ok(match &self.plan {
            Some(_) => {
                let (_, plan) = self.required()?;
                (global_for(global, &plan), Some(plan))
            }
            None => (global.clone(), None),
        })
    }

    /// The plan when one was named or exists at the default place; `None` when neither.
    pub fn optional(&self) -> Result<Option<(PathBuf, Plan)>> {
        if self.plan.is_none() && !plan::default_plan_path().exists() {
            return Ok(None);
        }
        self.required().map(Some)
    }
}

/// The global options with the plan's repository, password and cache; output flags stay the
/// caller's. A repository given with `-r` wins over the plan's, and so does `--password-file`.
pub fn global_for(global: &GlobalArgs, plan: &Plan) -> GlobalArgs {
    let mut g = global.clone();
    if global.repo.is_some() {
        return g;
    }
    let r = &plan.repository;
    g.repo = Some(PathBuf::from(&r.location));
    g.options = r.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    g.limit_upload = r.limit_upload.clone().or(g.limit_upload);
    if global.password_file.is_some() || global.password_command.is_some() {
        // `--password-file` or `--password-command` on the command line wins over the plan.
    } else if r.password_command.is_some() {
        g.password_command = r.password_command.clone();
    } else if r.password_file.is_some() {
        g.password_file = r.password_file.clone();
    }
    g.cache_dir = r.cache_dir.clone().or(g.cache_dir);
    g
}

/// The state file of the plan at `path`.
pub fn state_path(plan: &Plan, path: &Path) -> Result<PathBuf> {
    Ok(plan::state_path(plan, path)?)
}
