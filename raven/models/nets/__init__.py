"""Published vision networks in their released state-dict layouts, so that the released weights load with
`strict=True` from a local file (nothing is downloaded; `torch.load(weights_only=True)`):
- `rife.IFNet`: Practical-RIFE v4.25/v4.26 frame interpolation (`flownet.pkl`), for OpenVid clip preparation;
- `raft.RAFT`: princeton-vl RAFT (VBench's `raft-things.pth`), for dynamic degree;
- `amt.AMTS`: AMT-S (VBench's `amt-s.pth`), for motion smoothness.
`corr` holds the all-pairs correlation pyramid RAFT and AMT-S share; `load.load_published` the loader."""
