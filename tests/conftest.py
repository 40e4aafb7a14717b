import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
REFERENCE = SHARED / "reference"


def _torch_threads() -> int:
    """OMP_NUM_THREADS, or the CPUs this process may use."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 1)
    except ValueError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


THREADS = _torch_threads()
# exported, so that every child (a CLI run, a warm server) starts with this count rather than with
# torch's own default, which may count physical cores only
os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(autouse=True)
def torch_threads():
    """Every test computes with the thread count its CLI children start with (above): the thread count
    changes float rounding, so an in-process run and a child's run of the same job agree only on
    the same count; and a count one test sets does not leak into the next."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(THREADS)
    yield


@pytest.fixture
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    return FIXTURES


@pytest.fixture
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"checkpoint manifests not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture
def offline_landmarks():
    from tests.landmarks_env import offline_landmarks_skip_reason

    reason = offline_landmarks_skip_reason()
    if reason:
        pytest.skip(reason)


# -- markers (registered in pytest.ini) ---------------------------------------------------------
# The default run (pytest.ini: -m "not slow") leaves out the tests below; `python -m pytest -m ""`
# and .ci/run run everything. Each entry: a test file (every test in it) or file::test name (every
# parametrization, or one id with [...]), and what kind of slow it is. The default run keeps at
# least one test of every test file that has tests runnable without ComfyUI. Chosen by measured
# CPU time per test (docs/development.md, "Tests").
SLOW = {
    # the CLI end to end: generate / resume / paste-back / upscale runs on the tiny models
    "e2e": (
        "tests/test_cli_e2e.py",
        "tests/test_cli_full_frame.py",
        "tests/test_full_frame_resume.py",
        "tests/test_upscale_video_io.py::test_upscale_video_file_to_file",
        "tests/test_cli_batch.py",
        "tests/test_cli_speakers.py",
        "tests/test_vae_precision.py::test_cli_fp16_run_decodes_an_overflowing_vae",
    ),
    # children: the warm CLI server's table, cold CLI starts, pip, a launcher with SIGINT ignored
    "subprocess": (
        "tests/test_bad_inputs_cli.py",
        "tests/test_bad_inputs_holes.py",
        "tests/test_quickstart.py::test_the_quickstart_runs_as_printed_in_a_fresh_venv",
        "tests/test_doctor.py::test_selftest_writes_a_short_video",
        "tests/test_doctor.py::test_every_fix_line_runs_as_printed",
        "tests/test_download.py::test_download_command_against_a_local_hub",
        "tests/test_download.py::test_download_reports_a_missing_repo_file",
        "tests/test_download.py::test_offline_with_a_partly_filled_folder_names_the_absent_files",
        "tests/test_checks_outputs.py::test_the_interrupt_tests_pass_when_launched_with_sigint_ignored",
    ),
    # a real ComfyUI server or ComfyUI's Python (skipped without COMFYUI_PATH)
    "comfyui": (
        "tests/test_comfyui_bad_inputs.py",
        "tests/test_comfyui_full_frame.py",
        "tests/test_comfyui_integration.py",
        "tests/test_frontend_browser.py",
        "tests/test_nodes_comfy_vae.py",
        "tests/test_nodes_full_frame.py",
        "tests/test_nodes_motion.py",
        "tests/test_nodes_upscale_node.py",
        "tests/test_nodes_validation.py",
        "tests/test_options_schema.py::test_the_real_node_schemas_are_the_schema_widgets",
        "tests/test_options_schema.py::test_the_real_validate_inputs_use_the_schema_ranges",
        "tests/test_nodes_download.py::test_download_node_reports_then_fetches_from_the_right_repos",
        "tests/test_nodes_pack.py::test_the_extension_lists_every_node_once_with_prefixed_ids",
        "tests/test_nodes_pack.py::test_workflow_widget_table_follows_the_node_schemas",
        "tests/test_nodes_pack.py::test_registering_models_hallo_keeps_the_yaml_paths_first",
        "tests/test_nodes_pack.py::test_web_extension_registers_and_listens_to_the_pack_messages",
        "tests/test_models_attention.py::test_comfy_optimized_attention_matches_default",
        "tests/test_pipeline_device.py::test_comfy_ops_net_in_a_partially_loaded_patcher_gives_the_same_frames",
        "tests/test_comfyui_manager_install.py",
        "tests/test_comfyui_speakers.py",
        "tests/test_nodes_memory.py",
        "tests/test_options_schema.py::test_the_real_node_schemas_are_the_schema_widgets",
        "tests/test_options_schema.py::test_the_real_validate_inputs_use_the_schema_ranges",
    ),
    # in-process, but several whole generations or big tiny-model comparisons each; the same
    # module keeps a quicker test in the default run
    "slow": (
        "tests/test_nodes_reference.py::test_reference_context_is_used_and_gives_the_same_frames",
        "tests/test_pipeline_generate.py::test_mask_rate_zero_equals_plain_chain_and_drop_changes_later_clips",
        "tests/test_pipeline_generate.py::test_interrupt_then_resume_gives_identical_frames",
        "tests/test_pipeline_generate.py::test_streaming_mp4_after_interrupt_and_resume",
        "tests/test_pipeline_generate.py::test_prepared_context_gives_identical_frames_and_is_reused",
        "tests/test_pipeline_motion.py::test_continuation_equals_one_long_run",
        "tests/test_pipeline_motion.py::test_seed_schedule_needs_the_clip_index",
        "tests/test_pipeline_motion.py::test_run_hash_is_the_identity_the_checkpoint_records",
        "tests/test_pipeline_motion.py::test_motion_mask_rate_replaces_the_sampler_setting",
        "tests/test_pipeline_motion.py::test_image_sink_keeps_the_float_frames",
        "tests/test_speed_faithful.py::test_faithful_fast_two_clips_match_plain",
        "tests/test_models_unet.py::test_layers_come_from_operations_and_results_match",
        "tests/test_models_unet.py::test_motion_scale_is_used_and_none_equals_ones",
        "tests/test_models_unet.py::test_timestep_is_broadcast_per_batch_row",
        "tests/test_models_unet.py::test_uncond_row_ignores_conditioning",
        "tests/test_models_unet.py::test_shapes_through_every_block",
        "tests/test_models_unet.py::test_unused_motion_modules_are_not_run_and_can_be_dropped",
        "tests/test_models_unet.py::test_fast_path_equals_plain_path_with_odd_frame_count",
        "tests/test_models_unet.py::test_motion_frames_reach_both_rows",
        "tests/test_models_upstream_fixture.py::test_fixture_pins_these_weights",
        "tests/test_audio_zero_rows.py::test_zero_audio_rows_is_bit_exact[dtype1]",
        "tests/test_pipeline_device.py::test_explicit_device_and_dtype_give_the_same_frames",
        "tests/test_checkpoints.py::test_convert_to_fp16_safetensors",
        "tests/test_upscale_pipeline.py::test_tensor_and_iterable_inputs_agree_and_hooks",
        "tests/test_upscale_pipeline.py::test_hold_mode_reuses_landmarks",
        "tests/test_upscale_pipeline.py::test_streaming_yields_before_input_is_consumed",
        "tests/test_job_api.py::test_a_session_reads_each_weight_file_once_for_many_jobs",
        "tests/test_job_api.py::test_a_clip_state_continues_the_run_exactly",
        "tests/test_job_api.py::test_clips_are_the_frames_generate_writes",
        "tests/test_job_api.py::test_checkpoint_waits_for_committed_frames",
        "tests/test_pipeline_placement.py::test_host_placement_sees_every_reference_pass_with_its_shape",
        "tests/test_speakers.py::test_each_speakers_clips_are_its_single_face_run",
        "tests/test_speakers.py::test_a_stopped_run_resumes_into_the_frames_of_an_uninterrupted_one",
    ),
}


def slow_kinds(nodeid: str) -> list:
    """The SLOW kinds whose entries match ``nodeid`` (``tests/f.py::test_name[id]``)."""
    path, _, name = nodeid.partition("::")
    base = name.split("[", 1)[0]
    return [kind for kind, entries in SLOW.items()
            if any(e in (path, f"{path}::{base}", f"{path}::{name}") for e in entries)]


COLLECTED = pytest.StashKey[list]()


def pytest_configure(config):
    """pytest.ini's -m "not slow" is the default run's: tests named on the command line (a file,
    file::test) run whatever their marks, unless -m is given there too."""
    named = config.args_source == pytest.Config.ArgsSource.ARGS and all(".py" in str(a) for a in config.args)
    gave_m = any(a == "-m" or (a.startswith("-m") and not a.startswith("--"))
                 for a in map(str, config.invocation_params.args))
    if named and config.args and not gave_m:
        config.option.markexpr = ""


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        kinds = slow_kinds(item.nodeid)
        for kind in kinds:
            item.add_marker(kind)
        if kinds:
            item.add_marker("slow")
    # every collected test with its slow mark, before -m leaves some out (tests/test_markers.py)
    config.stash[COLLECTED] = [(item.nodeid, bool(slow_kinds(item.nodeid))) for item in items]
