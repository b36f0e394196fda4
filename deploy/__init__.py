"""Cloud submission: Dataflow job options and Vertex AI custom jobs."""
