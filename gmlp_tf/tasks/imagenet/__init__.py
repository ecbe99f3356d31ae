"""ImageNet classification (Table 7): images from TFDS or folders, keras-cv augmentation, the job, the digits demo."""
