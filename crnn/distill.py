"""Knowledge distillation for CTC models: a student learns a teacher's per-frame distributions besides CTC.

CTC sees only the transcript; the teacher's softmax at each frame also says which look-alike characters that
frame could be and where its characters sit. With a teacher of the same frame stride the two models' frames
line up, so the loss is the frame-level KL divergence (as PaddleOCR's DML loss for its CTC students), masked
to each line's own frames: a padded batch's padding frames are nobody's output. Used by training
(`train.distill`, any same-alphabet teacher) and by pruning's fine-tuning (`prune.distill`, the unpruned model
as the teacher unless another is named).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from crnn.charset import Charset
from crnn.data.preprocess import InputSpec
from crnn.models.checkpoint import load_checkpoint, sha256_file
from crnn.models.config import ModelConfig
from crnn.models.crnn import CRNN
from crnn.settings import DistillConfig
from crnn.train_utils import spec_mismatches


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    lengths: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over the valid frames of (N, T, C) logits.

    T^2 keeps the gradient's size independent of the temperature (Hinton et al.), so `weight` means the same
    at any T. Frames at or past a line's length are left out."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ: distillation needs the same alphabet and frame stride"
        )
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(dim=-1)  # (N, T)
    frames = torch.arange(kl.shape[1], device=kl.device)[None, :] < lengths.to(kl.device)[:, None]
    return (kl * frames).sum() / frames.sum().clamp(min=1) * temperature**2


@dataclass
class Teacher:
    """A frozen model in eval mode and how much its distributions count in the student's loss."""

    model: CRNN
    weight: float
    temperature: float
    source: str  # where it came from, for the student's lineage
    sha256: str

    @torch.no_grad()
    def logits(self, images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        return self.model(images, widths)

    def blend(
        self,
        ctc: torch.Tensor,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        kd = distill_loss(student_logits, teacher_logits, lengths, self.temperature)
        return (1 - self.weight) * ctc + self.weight * kd

    def lineage(self) -> dict[str, str]:
        return {
            "teacher": self.source,
            "teacher_sha256": self.sha256,
            "distill_weight": str(self.weight),
            "distill_temperature": str(self.temperature),
        }


def check_distill(d: DistillConfig, where: str) -> None:
    if not 0.0 <= d.weight <= 1.0:
        raise ValueError(f"{where}.distill.weight must be within [0, 1], got {d.weight}")
    if d.temperature <= 0:
        raise ValueError(f"{where}.distill.temperature must be positive, got {d.temperature}")


def load_teacher(
    d: DistillConfig,
    charset: Charset,
    student: ModelConfig,
    spec: InputSpec,
    device: torch.device,
    where: str,
    default: str = "",
) -> Teacher | None:
    """The teacher `d` asks for (its checkpoint, else `default`), or None when distillation is off.

    The teacher must read the student's alphabet in the same class order, see the student's input (the
    same normalisation) and give one frame per `hstride` pixels as the student does, else the frame-level
    loss compares unrelated things."""
    check_distill(d, where)
    if d.weight == 0:
        return None
    path = d.teacher or default
    if not path:
        raise ValueError(f"{where}.distill.weight={d.weight} needs {where}.distill.teacher=<checkpoint>")
    ck = load_checkpoint(path)
    problems = []
    if ck.charset != charset:
        problems.append(
            f"its alphabet ({ck.charset.num_classes} classes) is not the student's ({charset.num_classes})"
        )
    for key in ("hstride", "height"):
        if getattr(ck.model_config, key) != getattr(student, key):
            problems.append(
                f"model.{key} {getattr(ck.model_config, key)} against the student's {getattr(student, key)}"
            )
    problems += spec_mismatches(ck.input_spec, spec)
    if problems:
        raise ValueError(f"{where}.distill.teacher={path} cannot teach this model: " + "; ".join(problems))
    model = ck.build_model().float().to(device).eval()
    model.requires_grad_(False)
    return Teacher(model, d.weight, d.temperature, str(path), sha256_file(path))
