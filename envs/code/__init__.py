"""Code environments (HumanEval, JSONL code datasets, a procedural code family), scored in the sandbox."""
