//! RES-1's own enforcement: the operator declares where the database and the blob store run
//! (`data_region`, `blob_store_region`); an `s3://` blob store must declare its region, and
//! one outside the EU is refused at start unless `allow_non_eu_storage = true` (the control
//! then fails for as long as the override is on).

use crate::config::{Config, ConfigError, invalid};

/// Cloud regions located in an EU member state. Not every `eu-` region is in the EU:
/// London (`eu-west-2`) and Zurich (`eu-central-2`) are not, and neither are `uk*` or
/// `switzerland*` regions.
const EU_REGIONS: &[&str] = &[
    // AWS
    "eu-central-1", // Frankfurt
    "eu-west-1",    // Ireland
    "eu-west-3",    // Paris
    "eu-north-1",   // Stockholm
    "eu-south-1",   // Milan
    "eu-south-2",   // Spain
    // Google Cloud
    "europe-west1",      // Belgium
    "europe-west3",      // Frankfurt
    "europe-west4",      // Netherlands
    "europe-west8",      // Milan
    "europe-west9",      // Paris
    "europe-west10",     // Berlin
    "europe-west12",     // Turin
    "europe-north1",     // Finland
    "europe-north2",     // Stockholm
    "europe-central2",   // Warsaw
    "europe-southwest1", // Madrid
    // Azure
    "germanywestcentral",
    "germanynorth",
    "francecentral",
    "francesouth",
    "northeurope",
    "westeurope",
    "swedencentral",
    "italynorth",
    "polandcentral",
    "spaincentral",
    // Hetzner, Scaleway, OVHcloud
    "fsn1",
    "nbg1",
    "hel1",
    "fr-par",
    "nl-ams",
    "pl-waw",
    "gra",
    "sbg",
    "rbx",
    "waw",
    "de",
];

/// Whether a declared region is in the European Union.
pub fn is_eu_region(region: &str) -> bool {
    let region = region.trim().to_ascii_lowercase();
    EU_REGIONS.contains(&region.as_str())
}

/// Where each store runs, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The database's region (`data_region`), empty when undeclared.
    pub database: String,
    /// The blob store's region (`blob_store_region`, else `data_region`).
    pub blob_store: String,
    /// `local` (a folder next to the database) or the URL scheme, e.g. `s3`.
    pub blob_kind: String,
    pub override_on: bool,
}

impl Declared {
    pub fn of(config: &Config) -> Self {
        let blob_store = if config.blob_store_region.trim().is_empty() {
            config.data_region.trim().to_owned()
        } else {
            config.blob_store_region.trim().to_owned()
        };
        let blob_kind = if config.blob_store_url.trim().is_empty() {
            "local".to_owned()
        } else {
            config
                .blob_store_url
                .split_once("://")
                .map_or("unknown", |(scheme, _)| scheme)
                .to_ascii_lowercase()
        };
        Self {
            database: config.data_region.trim().to_owned(),
            blob_store,
            blob_kind,
            override_on: config.allow_non_eu_storage,
        }
    }
}

/// Refuses a configuration whose object-store blob store lies outside the EU (or does not say
/// where it lies), unless the override is on.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    for (key, value) in [
        ("data_region", &config.data_region),
        ("blob_store_region", &config.blob_store_region),
    ] {
        if value
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(invalid(
                key,
                "must be a region name such as eu-central-1 (letters, digits and -)",
            ));
        }
    }
    let declared = Declared::of(config);
    if declared.blob_kind == "local" || config.allow_non_eu_storage {
        return Ok(());
    }
    if declared.blob_store.is_empty() {
        return Err(invalid(
            "data_region",
            format!(
                "the {}:// blob store must declare its region (data_region or \
                 blob_store_region, e.g. eu-central-1), so that images are known to stay in \
                 the EU; set allow_non_eu_storage = true to start anyway",
                declared.blob_kind
            ),
        ));
    }
    if !is_eu_region(&declared.blob_store) {
        return Err(invalid(
            "blob_store_region",
            format!(
                "the blob store's region {} is outside the European Union, and the Trust & \
                 Safety page promises EU infrastructure; use an EU region (e.g. eu-central-1) or \
                 set allow_non_eu_storage = true, which makes control RES-1 fail",
                declared.blob_store
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, region: &str, allow: bool) -> Config {
        Config {
            blob_store_url: url.into(),
            data_region: region.into(),
            allow_non_eu_storage: allow,
            ..Config::default()
        }
    }

    #[test]
    fn eu_regions_exclude_london_and_zurich() {
        assert!(is_eu_region("eu-central-1"));
        assert!(is_eu_region("EU-WEST-1"));
        assert!(!is_eu_region("eu-west-2"));
        assert!(!is_eu_region("eu-central-2"));
        assert!(!is_eu_region("us-east-1"));
        assert!(!is_eu_region(""));
    }

    #[test]
    fn an_s3_store_outside_the_eu_is_refused_unless_overridden() {
        assert!(check(&config("s3://bucket/images", "eu-central-1", false)).is_ok());
        let err = check(&config("s3://bucket/images", "us-east-1", false)).unwrap_err();
        assert_eq!(err.key, "blob_store_region");
        assert!(err.problem.contains("us-east-1"), "{}", err.problem);
        assert!(err.problem.contains("allow_non_eu_storage"));
        assert!(check(&config("s3://bucket/images", "us-east-1", true)).is_ok());
        let err = check(&config("s3://bucket/images", "", false)).unwrap_err();
        assert_eq!(err.key, "data_region");
        // A local folder lives wherever the server does.
        assert!(check(&config("", "", false)).is_ok());
        // The blob store's own region wins over data_region.
        let mut split = config("s3://bucket", "eu-central-1", false);
        split.blob_store_region = "eu-west-2".into();
        assert!(check(&split).is_err());
        assert!(check(&config("", "eu central", false)).is_err());
    }
}
