"""Pipeline announcements: a capability fed by the GitLab inbox (owns the `pipelines` table)."""
