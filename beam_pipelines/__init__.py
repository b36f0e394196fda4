"""Apache Beam jobs: ingestion, bulk teacher inference, pseudo-label selection, robustness evaluation.

Each job is a module runnable as `python -m beam_pipelines.<job>` with the
standard Beam flags (--runner, --project, --region, --temp_location, ...).
`JOBS` is the one list of them: the CLI's commands and `noisystudent dataflow`
read it.
"""

# command name -> (module with run(argv), one-line description)
JOBS: dict[str, tuple[str, str]] = {
    "ingest-digits": ("beam_pipelines.ingest_digits",
                      "Beam: scikit-learn digits -> labeled/unlabeled/test image records."),
    "ingest-svhn": ("beam_pipelines.ingest_svhn", "Beam: SVHN .mat files or a tfds data_dir -> image records."),
    "ingest-folder": ("beam_pipelines.ingest_folder", "Beam: folders of your own images -> image records."),
    "ingest-idx": ("beam_pipelines.ingest_idx",
                   "Beam: IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST) -> image records."),
    "predict": ("beam_pipelines.predict",
                "Beam: a teacher labels unlabeled images (or --relabel pseudo-labeled ones)."),
    "select": ("beam_pipelines.select",
               "Beam: confidence histograms, thresholds, cap and duplicate-to-balance -> student data."),
    "evaluate": ("beam_pipelines.evaluate",
                 "Beam: clean, corrupted (ImageNet-C) and FGSM accuracy of a model; mCE against a reference."),
}
