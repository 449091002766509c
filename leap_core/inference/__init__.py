"""Using a trained model: embed images, search a gallery, export for serving."""
