"""Load a folder of documents, chunk it along its structure, embed it and write it to Chroma."""
