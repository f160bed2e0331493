"""Embed an image collection with an exported packed graph into Parquet shards, and search it.

    from madtp_deploy.embed import embed_collection, search
    embed_collection("shipped", "photos/", "index/")              # local batched loop (default)
    embed_collection("shipped", "photos/", "index/", ray="auto")  # the same job on a Ray cluster
    search.search_index("index/", text="a red cube", k=10)

An index folder holds `index.json` (model, graph, collection and shard layout), `part-NNNNN.parquet`
shards (columns path, embedding, kept, gflops; shard k holds images k*S .. k*S+S-1 of the collection
that decoded), `errors.jsonl` (the images skipped and why) and the model's tokenizer (for text
queries). Shards are written atomically, so a killed run resumes where it stopped.
"""

from .collection import embed_collection  # noqa: F401
