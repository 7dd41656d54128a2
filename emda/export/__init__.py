"""Export a trained network for tools outside emda: TorchScript, ONNX, bioimage.io."""
