"""docker/k8s/: valid against the Kubernetes API schemas, a GPU per pod, probes on /ready and /health."""

from __future__ import annotations

import kubernetes_validate
import pytest

from .files import K8S, final_stage, yaml_documents
from .kserve_schema import check

FILES = sorted(K8S.glob("*.yaml"))
RESOURCES = {(doc["kind"], doc["metadata"]["name"]): doc for path in FILES for doc in yaml_documents(path)}
DEPLOYMENT = RESOURCES["Deployment", "vae-service"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_manifests_validate_strictly(path):
    for doc in yaml_documents(path):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_apply_needs_no_custom_resources():
    """`kubectl apply -f docker/k8s/` works on any cluster: KServe's resource lives in a subfolder."""
    assert {kind for kind, _ in RESOURCES} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_each_pod_asks_for_a_gpu():
    resources = CONTAINER["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"])


def test_probes_readiness_and_liveness():
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    (port,) = CONTAINER["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert ("EXPOSE", "8000") in final_stage()


def test_termination_leaves_time_for_in_flight_requests():
    pre_stop = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert POD["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 20


def test_runs_as_the_image_user_without_privileges():
    user = next(args for keyword, args in final_stage() if keyword == "USER")
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert str(POD["securityContext"]["runAsUser"]) == user.split(":")[0]
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    assert CONTAINER["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_hpa_pdb_and_config_point_at_the_deployment():
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = RESOURCES["Service", "vae-service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    hpa = RESOURCES["HorizontalPodAutoscaler", "vae-service"]["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == ("Deployment", "vae-service")
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    pdb = RESOURCES["PodDisruptionBudget", "vae-service"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    (config,) = CONTAINER["envFrom"]
    assert ("ConfigMap", config["configMapRef"]["name"]) in RESOURCES


KSERVE = K8S / "kserve"
(RUNTIME,) = yaml_documents(KSERVE / "servingruntime.yaml")
SERVICES = {mode: yaml_documents(KSERVE / f"inferenceservice-{mode}.yaml")[0] for mode in ("raw", "serverless")}


@pytest.mark.parametrize(
    ("path", "model"),
    [("servingruntime.yaml", "V1alpha1ServingRuntime")]
    + [(f"inferenceservice-{mode}.yaml", "V1beta1InferenceService") for mode in ("raw", "serverless")],
)
def test_kserve_resources_have_only_fields_of_kserves_own_models(path, model):
    (doc,) = yaml_documents(KSERVE / path)
    check(doc, model, path)


def test_the_serving_runtime_runs_the_same_container_on_mnt_models_over_v2():
    assert (RUNTIME["apiVersion"], RUNTIME["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    spec = RUNTIME["spec"]
    assert spec["protocolVersions"] == ["v2"] and spec["multiModel"] is False
    (container,) = spec["containers"]
    assert container["image"] == CONTAINER["image"]
    assert container["command"] == ["vae-serve"] and container["args"] == ["--models-dir", "/mnt/models"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e["value"] for e in container["env"]}
    config = RESOURCES["ConfigMap", CONTAINER["envFrom"][0]["configMapRef"]["name"]]["data"]
    # One server process per GPU, as the Deployment's: more would each load every model onto the one GPU.
    assert env["VAE_PROCESSES"] == config["VAE_PROCESSES"] == "1"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, "1.30.0", strict=True)


@pytest.mark.parametrize(("mode", "deployment_mode"), [("raw", "RawDeployment"), ("serverless", "Serverless")])
def test_each_inference_service_loads_from_storage_with_the_runtime(mode, deployment_mode):
    isvc = SERVICES[mode]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == deployment_mode
    model = isvc["spec"]["predictor"]["model"]
    formats = {f["name"] for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert model["runtime"] == RUNTIME["metadata"]["name"] and model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] == "v2" and "://" in model["storageUri"]


SECRET_FILE = K8S / "secrets" / "api-key.yaml"


def test_api_key_comes_from_an_optional_secret():
    """With the Secret, the pods demand its key; without it, they start and demand none."""
    (secret,) = yaml_documents(SECRET_FILE)
    kubernetes_validate.validate(secret, "1.30.0", strict=True)
    (env,) = [e for e in CONTAINER["env"] if e["name"] == "VAE_API_KEY"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["optional"]) == (secret["metadata"]["name"], True)
    assert ref["key"] in secret["stringData"]
    assert ("Secret", secret["metadata"]["name"]) not in RESOURCES, "kubectl apply -f docker/k8s/ sets no key"
    assert "VAE_API_KEY" not in RESOURCES["ConfigMap", "vae-service"]["data"], "a key belongs in a Secret"


AUTOSCALING = K8S / "autoscaling"
QUEUE_PER_REQUEST = "rate(vae_queue_seconds_sum"


(QUEUE_HPA,) = yaml_documents(AUTOSCALING / "hpa-queue-time.yaml")


def test_the_default_hpa_reads_cpu_only_so_it_scales_down_on_any_cluster():
    """An HPA scales down only when it can read every metric: a custom one applied by default would keep a cluster
    without the Prometheus adapter at its peak replica count."""
    hpa = RESOURCES["HorizontalPodAutoscaler", "vae-service"]["spec"]
    assert [m["type"] for m in hpa["metrics"]] == ["Resource"] and hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_the_queue_time_hpa_replaces_the_default_one_with_the_adapters_metric():
    kubernetes_validate.validate(QUEUE_HPA, "1.30.0", strict=True)
    default = RESOURCES["HorizontalPodAutoscaler", "vae-service"]
    assert QUEUE_HPA["metadata"]["name"] == default["metadata"]["name"]  # applying it replaces the default
    hpa = QUEUE_HPA["spec"]
    assert hpa["scaleTargetRef"] == default["spec"]["scaleTargetRef"]
    pods, cpu = hpa["metrics"]
    assert pods["pods"]["metric"]["name"] == "vae_queue_seconds_per_request"
    assert cpu["resource"]["name"] == "cpu"
    (adapter,) = yaml_documents(AUTOSCALING / "prometheus-adapter-rules.yaml")
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == "vae_queue_seconds_per_request"
    assert QUEUE_PER_REQUEST in rule["metricsQuery"] and "vae_queue_seconds_count" in rule["metricsQuery"]


def test_the_keda_alternative_scales_the_same_deployment_on_the_same_query():
    (scaled,) = yaml_documents(AUTOSCALING / "keda-scaledobject.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    (trigger,) = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    assert trigger["type"] == "prometheus" and QUEUE_PER_REQUEST in query
    # The mean over the fleet is one value, not a per-pod average: KEDA scales it against the replica count.
    assert trigger["metricType"] == "Value"
    # Only labels that Prometheus's pod discovery adds (as the adapter rule's): the service exports model,
    # version and graph, and nothing in docker/k8s makes a `service` label.
    assert 'pod=~"vae-service-' in query and '{service="' not in query
    assert float(trigger["metadata"]["threshold"]) == 0.02  # the queue-time HPA's 20m
    hpa = QUEUE_HPA["spec"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
