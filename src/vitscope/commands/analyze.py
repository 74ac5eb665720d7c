"""``vitscope analyze``: every per-layer metric of one model over an image set, one pass."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from vitscope.commands.options import BatchSize, Device, Precision, Progress, Seed
from vitscope.models import SUPPORTED_SPECS

log = logging.getLogger("vitscope")

METRIC_HELP = "comma-separated: attention (distance, NMI, entropy), similarity, spectrum, fourier"


def analyze(
    model_spec: str, data: str, out: Path, *, images: int | None = None, batch_size: int = 64,
    device: str = "auto", precision: str = "fp32", metrics: str = "attention,similarity,spectrum,fourier",
    seed: int = 0, workers: int | None = None, progress: bool = True, plots: bool = True, decoder: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """Load, stream, compute, write ``out/results.json`` (+ one PNG per metric); return the results.

    Under ``torchrun --nproc_per_node K -m vitscope analyze ...`` every process analyses a
    disjoint shard and the accumulators are summed; rank 0 writes the files. ``decoder``: an
    MAE pretraining checkpoint's decoder is analysed too (mask ratio 0, a second pass), its
    metrics under ``metrics["decoder"]`` (Park et al. Fig. 10). ``compile``: torch.compile the
    attention and similarity reductions (seconds once per machine, then faster; docs/analysis.md).
    """
    import torch

    from vitscope.analysis import build_metrics, model_summary, run_metrics
    from vitscope.runtime import init_distributed, shard
    from vitscope.data import make_loader, model_transform, open_dataset, subset
    from vitscope.data.transforms import model_data_config
    from vitscope.metrics.spectrum import IMAGE_RANK_RULE
    from vitscope.models import load
    from vitscope.report.plots import plot_all
    from vitscope.results import check_output_folder, ensure_dir, versions, write_results

    rank, world, dev = init_distributed(device)
    if rank == 0:
        check_output_folder(out)
    torch.manual_seed(seed)
    model = load(model_spec, seed=seed)
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    accumulators = build_metrics(names, model, dev, compile)
    if decoder:
        from vitscope.models.mae_decoder import load_mae_decoder

        dec, layout = load_mae_decoder(model_spec, model)
        dec_accumulators = build_metrics(names, dec, dev, compile)
    ds = shard(subset(open_dataset(data, model_transform(model)), images, seed), rank, world)
    loader = make_loader(ds, batch_size, workers=workers, pin=dev.type == "cuda")
    loader.num_images = len(ds)  # type: ignore[attr-defined]
    res = run_metrics(model, loader, accumulators, device=dev, precision=precision,
                      progress=progress and rank == 0)
    if decoder:
        dec_res = run_metrics(dec, loader, dec_accumulators, device=dev, precision=precision,
                              progress=progress and rank == 0)
        res["metrics"]["decoder"] = dec_res["metrics"]
        res["seconds"] += dec_res["seconds"]
    if res["skipped"]:
        log.warning("%d unreadable images skipped (names in results.json 'skipped')", len(res["skipped"]))
    results = {
        "kind": "vitscope-analysis",
        "model": model_summary(model),
        "data": {"spec": data, "requested_images": images, "images": res["images"],
                 "skipped": res["skipped"], "preprocessing": _jsonable(model_data_config(model))},
        "seed": seed, "device": str(dev), "processes": world, "precision": precision, "compiled": compile,
        "seconds": res["seconds"], "images_per_second": res["images"] / max(res["seconds"], 1e-9),
        "versions": versions(),
        "conventions": {
            "prefix_tokens": "dropped; attention rows renormalised over patch tokens",
            "nmi_query_prior": "uniform, p(q) = 1/N",
            "distance": "pixels between patch centres (patch size x grid distance)",
            "depth_index": "attention/similarity: block i; spectrum/fourier: 0 = embedding, i = after block i",
            "checkpoints": "loaded strictly",
            "image_spectrum_rank": IMAGE_RANK_RULE,
        },
        "metrics": res["metrics"],
    }
    if decoder:
        results["decoder"] = {**dec.summary(), "layout": layout, "metrics_key": "metrics.decoder",
                              "depth_index": "decoder block i (spectrum/fourier: 0 = decoder input)"}
    if rank == 0:
        ensure_dir(out)
        write_results(out / "results.json", results)
        if plots:
            plot_all([(str(model_spec), results["metrics"])], out)
    return results


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def register(app: typer.Typer) -> None:
    @app.command("analyze", help=f"Attention, similarity, spectra and Fourier, layer by layer.\n\n"
                                 f"Per-layer metrics of one model over an image set, in one pass. "
                                 f"MODEL: {SUPPORTED_SPECS}. DATA: an image folder, a .npz file or cifar10[:split].")
    def _cmd(
        model: Annotated[str, typer.Option("--model", "-m", help="model spec")],
        data: Annotated[str, typer.Option("--data", "-d", help="image folder, .npz, or cifar10[:train|test]")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        images: Annotated[int | None, typer.Option(help="analyse a seeded random subset of N images")] = None,
        batch_size: BatchSize = 64,
        device: Device = "auto",
        precision: Precision = "fp32",
        metrics: Annotated[str, typer.Option(help=METRIC_HELP)] = "attention,similarity,spectrum,fourier",
        seed: Seed = 0,
        workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: cores - 1)")] = None,
        progress: Progress = True,
        plots: Annotated[bool, typer.Option(help="write one PNG per metric")] = True,
        decoder: Annotated[bool, typer.Option("--decoder", help="also the decoder of an MAE pretraining checkpoint, "
                                                                "mask ratio 0 (Park Fig. 10)")] = False,
        compile: Annotated[bool, typer.Option("--compile", help="torch.compile the attention and similarity "
                                                                "reductions: seconds to compile once per machine, "
                                                                "faster after")] = False,
    ) -> None:
        res = analyze(model, data, out, images=images, batch_size=batch_size, device=device,
                      precision=precision, metrics=metrics, seed=seed, workers=workers,
                      progress=progress, plots=plots, decoder=decoder, compile=compile)
        typer.echo(f"{res['data']['images']} images ({len(res['data']['skipped'])} skipped), "
                   f"{res['images_per_second']:.1f} img/s -> {out / 'results.json'}")
