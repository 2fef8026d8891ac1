"""What runs inside the operator's Job pods, in the trainer image: `mtd step` and
`mtd profile`, the hub download, and publishing a result for the operator to read.
Nothing here imports kopf or the operator's controller."""
