"""The models: the token encoder, its heads and task models, the vision classifier, and timm import."""
