"""Data: prompt files, mp4 video I/O, parquet shards of clips, temporal resampling, toy-world clips."""
