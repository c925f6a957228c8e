//! The web UI of plans and billing: the tenant's Plans & billing page, the platform's plan matrix,
//! a tenant's subscriptions and overrides in the console, and pages of features a plan leaves out.
