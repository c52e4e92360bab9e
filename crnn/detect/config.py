"""The detector's settings: the `detect:` section of configs/config.yaml, beside the recognizer's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from crnn.detect.boxes import BoxConfig
from crnn.detect.pages import PageConfig
from crnn.detect.targets import TargetConfig

BLOCKS = ("conv", "dwsep")


@dataclass
class DetModelConfig:
    name: str = "db_mobile"
    block: str = "dwsep"  # conv: 3x3 Conv-BN-ReLU; dwsep: depthwise 3x3 + pointwise 1x1, each Conv-BN-ReLU
    channels: list[int] = field(default_factory=lambda: [16, 24, 48, 96, 160])  # stride 2, 4, 8, 16, 32
    depths: list[int] = field(default_factory=lambda: [1, 2, 2, 3, 2])  # blocks per stage; the first strides
    neck: int = 64
    k: float = 50.0  # DB's binarization steepness

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"detect.model.block must be one of {BLOCKS}, got {self.block!r}")
        if len(self.channels) != 5 or len(self.depths) != 5:
            raise ValueError("detect.model.channels and depths need 5 entries (strides 2, 4, 8, 16, 32)")
        if self.neck % 4:
            raise ValueError(f"detect.model.neck must be a multiple of 4, got {self.neck}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DetTrainConfig:
    max_steps: int = 20000
    batch_size: int = 8
    size: int = 512  # square training crops, px (a multiple of 32)
    scale: list[float] = field(default_factory=lambda: [0.5, 1.4])  # times the scale inference reads pages at
    crops_per_page: int = 2  # crops cut from each rendered page (each at its own scale and place)
    lr: float = 0.002
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 5.0
    log_every: int = 20
    val_every: int = 1000
    val_pages: int = 60  # synthetic validation pages (their own seed), read as inference reads them
    save_minutes: float = 10.0  # also save last.pt this often (and every val_every steps)
    max_minutes: float = 0.0  # wall-clock budget of this run (0: none)
    num_workers: int = 2
    resume: bool = False
    resume_from: str | None = (
        None  # a last.pt (or its folder) to continue instead of runs/<name>/detect/train
    )
    # another run's weights to start a new run from (step 0, fresh moments, this config's schedule): a decay
    # branch of a long run, or a fine-tune. Read only when the run starts, not on its resumes.
    init_from: str | None = None
    threads: int = 0
    device: str = "auto"


@dataclass
class DetExportConfig:
    opset: int = 17
    parity_pages: int = 8
    parity_atol: float = 1e-3


@dataclass
class DetQuantizeConfig:
    calibration_pages: int = 32  # synthetic training pages
    f1_budget_points: float = 1.0  # INT8 may lose at most this much F1 (points) on the validation pages
    reduce_range: bool = True  # 7-bit weights (U8S8 kernels saturate on AVX2 CPUs without VNNI)
    threads: int = 2


@dataclass
class DetCalibrateConfig:
    """crnn.detect.calibrate: the box settings chosen on held-out synthetic pages after export."""

    pages: int = 80
    seed_offset: int = 2  # pages from detect.val_seed + this (validation is + 0, the contact sheet + 1)
    unclip_scale: list[float] = field(default_factory=lambda: [0.7, 0.75, 0.8, 0.85, 0.9, 1.0, 1.1])
    box_thresh: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7])
    bin_thresh: list[float] = field(default_factory=lambda: [0.3])
    detector: str = ""  # default: runs/<name>/detect/export/detector.onnx, rewritten in place
    threads: int = 2


@dataclass
class DetEvalConfig:
    """crnn.detect.evaluate: page mode on real pages (boxes and texts), per reader."""

    pages: str = "../shared/realdev/pages"
    readers: list[str] = field(
        default_factory=lambda: ["detector", "bundled", "truth", "projection", "ppocr"]
    )
    recognizer: str = ""  # default: the bundled recognizer (models/crnn_zh_en.int8.onnx, else .onnx)
    # the recognizer's character LM (decoder lm): "" reads as served, the bundled LM with the bundled
    # recognizer; "none" reads greedy
    lm: str = ""
    detector: str = ""  # default: runs/<name>/detect/export/detector.onnx
    threads: int = 2
    out_dir: str = "eval"  # runs/<name>/detect/<out_dir>/pages.{json,md}


@dataclass
class DetectConfig:
    model: DetModelConfig = field(default_factory=DetModelConfig)
    pages: PageConfig = field(default_factory=PageConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    boxes: BoxConfig = field(default_factory=BoxConfig)
    train: DetTrainConfig = field(default_factory=DetTrainConfig)
    export: DetExportConfig = field(default_factory=DetExportConfig)
    calibrate: DetCalibrateConfig = field(default_factory=DetCalibrateConfig)
    quantize: DetQuantizeConfig = field(default_factory=DetQuantizeConfig)
    eval: DetEvalConfig = field(default_factory=DetEvalConfig)
    val_seed: int = 90210  # synthetic validation pages
