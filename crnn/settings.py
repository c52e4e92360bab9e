"""The typed shape of the Hydra config (configs/config.yaml) shared by the data and training stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crnn.config import from_dict, to_container
from crnn.data.corpus import CorpusConfig
from crnn.data.preprocess import InputSpec
from crnn.data.render import RenderConfig
from crnn.data.train_augment import AugmentConfig
from crnn.detect.config import DetectConfig
from crnn.models.config import ModelConfig
from crnn.tracking import MlflowConfig


@dataclass
class SplitConfig:
    size: int = 1000
    seed: int = 0
    balanced: bool = False  # scenes in turn (val/test) instead of by recipe weight (train)
    exclude_fonts: list[str] = field(default_factory=list)  # fonts kept out of this split
    recrop_p: float = 0.0  # share of lines re-cut around their ink with new margins (training augmentation)


@dataclass
class DataConfig:
    root: str = "data/default"
    train: str = "lmdb"  # lmdb: read <root>/train; synth: render on the fly in the loader workers
    train_lmdb: list[str] = field(default_factory=list)  # LMDBs to train on instead of <root>/train
    val_lmdb: list[str] = field(default_factory=list)  # LMDBs to validate on instead of <root>/val
    splits: dict[str, SplitConfig] = field(default_factory=dict)
    image_format: str = "png"
    workers: int = 2

    def split_path(self, split: str) -> Path:
        return Path(self.root) / split

    def train_paths(self) -> list[str]:
        """`train_lmdb` when given (yours, made by scripts/make_lmdb.py or another tool; list <root>/train
        too to mix it with the synthetic set), else the rendered <root>/train."""
        return list(self.train_lmdb) or [str(self.split_path("train"))]

    def val_paths(self) -> list[str]:
        return list(self.val_lmdb) or [str(self.split_path("val"))]


@dataclass
class DistillConfig:
    """Knowledge distillation (crnn.distill): the student also learns the teacher's per-frame distributions,
    which say more per line than the transcript CTC sees (which look-alike characters a frame could be)."""

    teacher: str = ""  # checkpoint of the teacher; prune: "" is the unpruned model being pruned
    weight: float = 0.0  # 0: off; loss = (1 - weight) * CTC + weight * T^2 * KL(teacher || student)
    temperature: float = 1.0  # T: softens both distributions so the teacher's second choices count


@dataclass
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | onecycle
    grad_clip: float = 5.0
    val_every: int = 250
    save_every: int = 250
    log_every: int = 20
    num_workers: int = 2
    resume: bool = False
    # train.resume=true reads <runs_dir>/<name>/train/last.pt, or the last.pt in this folder (or this file):
    # what a training bundle brought back from another machine
    resume_from: str | None = None
    init_from: str | None = None
    max_minutes: float = 0.0  # wall-clock budget of this run (0: none); stops, validates and saves when spent
    save_minutes: float = 0.0  # also save last.pt whenever this much time passed since the last save (0: off)
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA only
    cpu_amp: bool = False  # bf16 autocast on the CPU too (measured: scripts/train_speed.py)
    channels_last: bool = False  # NHWC convolutions
    compile: bool = False  # torch.compile the forward (dynamic shapes: every batch has its own width)
    threads: int = 0  # torch intra-op threads (0: leave as is)
    keep_heap: bool = True  # CPU: keep freed memory instead of page-faulting it back each step (crnn.memory)
    val_batch_size: int = 128
    val_max_lines: int = 0  # 0: the whole validation set
    bucket_pool: int = 50
    stream_pool: int = 1  # data.train=synth: batches rendered together and regrouped by width (1: off)
    # a moving average of the weights (crnn/ema.py), which validation, best.pt and snapshots use; 0: none.
    # It averages over about 1 / (1 - ema_decay) steps.
    ema_decay: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training lines only, never validation
    distill: DistillConfig = field(default_factory=DistillConfig)  # off unless distill.weight > 0


@dataclass
class PruneConfig:
    """crnn.prune: structured channel pruning with fine-tuning between steps."""

    source: str = ""  # checkpoint to prune; default runs/<name>/train/best.pt
    criterion: str = "l1"  # l1: L1 norm of each filter; bn_scale: |gamma| of its BatchNorm
    target_macs_ratio: float = 0.5  # fraction of MACs (at 32x320) to remove
    layer_keep: list[float] = field(default_factory=list)  # per conv layer keep ratios (instead of a target)
    skip_layers: list[int] = field(default_factory=lambda: [0])  # conv layers left whole (the first is cheap)
    round_to: int = 8
    min_channels: int = 8
    iterations: int = 3
    finetune_steps: int = 200  # after each pruning step
    final_finetune_steps: int = 400
    lr: float = 0.0005
    val_max_lines: int = 0
    # the fine-tuning between steps learns from the unpruned model too (distill.teacher "" = prune.source)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class ExportConfig:
    """crnn.export: fused FP32 ONNX with metadata and a parity check against PyTorch."""

    source: str = (
        ""  # checkpoint to export; default: runs/<name>/prune/pruned.pt if it exists, else train/best.pt
    )
    opset: int = 17
    fuse: bool = True
    parity_widths: list[int] = field(default_factory=lambda: [16, 64, 200, 500, 1000, 2000])
    parity_lines: int = 64  # validation lines checked at each width
    parity_atol: float = 1e-3


@dataclass
class QuantizeConfig:
    """crnn.quantize: INT8 candidates measured against FP32; the fastest within the CER budget wins."""

    source: str = ""  # FP32 ONNX; default runs/<name>/export/model.onnx
    candidates: list[str] = field(
        default_factory=lambda: ["dynamic_all", "dynamic_rnn", "static_qdq", "static_qdq_rnn"]
    )
    cer_budget_points: float = 0.5  # allowed CER increase over FP32, in points, on every scene and overall
    calibration_lines: int = 256
    calibration_method: str = "minmax"  # minmax | entropy | percentile
    latency_reps: int = 50
    latency_width: int = 320
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    threads: list[int] = field(default_factory=lambda: [1, 0])  # 0: all cores
    val_max_lines: int = 0
    allow_none: bool = False  # if no candidate qualifies: keep FP32 and exit 0 instead of failing
    require_batch_invariance: bool = True  # a line must read the same alone as in a batch
    reduce_range: bool = True  # 7-bit weights: U8S8 kernels saturate on AVX2 CPUs without VNNI
    batch_invariance_atol: float = 1e-4  # max |logit change| allowed between the two


@dataclass
class EvalConfig:
    """crnn.eval: every artifact on the test sets, per scene type; the regression gate's tolerances."""

    artifacts: list[str] = field(default_factory=list)  # default: the experiment's trained/pruned/FP32/INT8
    # LMDBs or labelled image folders (labels.tsv per category subfolder); default: <data.root>/test
    test_sets: list[str] = field(default_factory=list)
    # text normalisation before scoring, per scene or category (glob keys; exact name first, then globs
    # in order): rules of crnn.textnorm, applied to label and prediction alike
    normalize: dict[str, list[str]] = field(default_factory=dict)
    out_dir: str = "eval"  # report folder under runs/<name>/
    batch_size: int = 32  # for throughput
    decoder: str = "greedy"  # greedy | beam (CTC prefix beam search) | lm (beam search + eval.lm)
    beam_width: int = 10
    lm: str = ""  # the character LM file of decoder lm (crnn.lm_build), its weights inside
    second_look: bool = True  # doubtful lines read again blurred, as served (crnn.predictor.SecondLook)
    # readings that look like these formats held to them, as served (crnn.formats.SERVED_FORMATS)
    formats: list[str] = field(default_factory=lambda: ["plate_zh"])
    latency_lines: int = 50  # lines per scene timed at batch 1
    threads: int = 0  # 0: all cores
    worst: int = 20  # worst lines per scene in the HTML report
    cer_tolerance_points: float = 0.5  # gate: CER may rise this much per scene (points)
    latency_tolerance: float = 0.5  # gate: latency ratio to FP32 ONNX may rise by this fraction
    baseline: str = ""  # gate: the report.json to compare against
    peers: list[str] = field(default_factory=list)  # other recognisers in the same report: ppocr, tesseract


@dataclass
class LmConfig:
    """crnn.lm_build: a character n-gram LM of the run's own corpus for the CTC beam search (crnn.lm), its
    fusion weights chosen on the validation lines."""

    order: int = 4  # characters per n-gram: 3 of context
    lines: int = 200000  # corpus lines counted
    seed: int = 4242  # the corpus seed of those lines (not a data split's)
    min_count: int = 3  # rarer n-grams are dropped (their mass goes to the shorter context)
    discount: float = 0.75
    model: str = ""  # the recognizer the weights are tuned with; default runs/<name>/quantize/model.int8.onnx
    alpha: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])  # LM weight
    beta: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])  # bonus per character
    beam_width: int = 8
    val_max_lines: int = 0  # 0: every validation line
    threads: int = 0


@dataclass
class SmoothConfig:
    """crnn.smooth: the input smoothing (InputSpec.smooth) of a trained model's files, chosen on validation
    lines rendered from the run's recipes."""

    models: list[str] = field(
        default_factory=list
    )  # default runs/<name>/{export/model,quantize/model.int8}.onnx
    lines: int = 3600  # validation lines rendered, scenes in turn
    grid: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.4, 0.5, 0.6, 0.7])  # sigmas, px
    threads: int = 0


@dataclass
class RunConfig:
    name: str = "default"
    seed: int = 0
    charset: str = "zh_en"
    oov_policy: str = "skip"
    runs_dir: str = "runs"
    input: InputSpec = field(default_factory=InputSpec)
    # configs/model/*.yaml; num_classes comes from the alphabet and height from input.height when the model
    # is built (crnn.train_utils.model_config_for), so neither is set in the config
    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lm: LmConfig = field(default_factory=LmConfig)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)  # the text-line detector (crnn.detect)

    def __post_init__(self) -> None:
        if self.model.num_classes:
            raise ValueError(
                f"model.num_classes={self.model.num_classes}: the number of classes comes from the alphabet "
                f"(charset={self.charset}); remove the key"
            )
        if self.model.height != self.input.height:
            raise ValueError(
                f"model.height={self.model.height} differs from input.height={self.input.height}: the model "
                "reads lines of the input height; set input.height only"
            )

    def stage_dir(self, stage: str) -> Path:
        return Path(self.runs_dir) / self.name / stage


def load_run_config(cfg) -> RunConfig:
    """DictConfig -> RunConfig; Hydra's own `hydra` node is not ours and is dropped. The model's height is
    the input's unless the config names one (and then they must agree)."""
    d = to_container(cfg)
    d.pop("hydra", None)
    model, spec = d.get("model"), d.get("input") or {}
    if isinstance(model, dict) and "height" not in model:
        d["model"] = {**model, "height": spec.get("height", InputSpec.height)}
    return from_dict(RunConfig, d)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_run_config(args: list[str], extras: tuple[str, ...] = ()) -> tuple[RunConfig, dict[str, str]]:
    """configs/config.yaml composed with Hydra overrides outside a Hydra entry point (scripts, tests).

    Arguments `+name=value` whose name is in `extras` belong to the calling script; they come back in the
    dict instead of going to Hydra.
    """
    from hydra import compose, initialize_config_dir

    own: dict[str, str] = {}
    overrides = []
    for a in args:
        key = a[1:].split("=", 1)[0] if a.startswith("+") else ""
        if key in extras and "=" in a:
            own[key] = a.split("=", 1)[1]
        else:
            overrides.append(a)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return load_run_config(compose(config_name="config", overrides=overrides)), own
