"""Teacher domain adaptation and knowledge distillation (MobileSAM, KD-SAM, SAM-to-U-Net, EdgeSAM)."""
