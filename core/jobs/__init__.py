"""Job plumbing shared by the apps and the CLI: atomic writes, tables, run manifests, hashing,
progress, CLI support, plots and the HTML report. The autoencoder library (the rest of `core`) needs
none of it except atomic writes and hashing for model directories."""
