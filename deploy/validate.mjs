// Offline checks of Queue's deployment files; run by scripts/validate-deploy.sh.
//
//   node deploy/validate.mjs render <label> <rendered.yaml> [--no-adapter-check]
//       Validates one `kubectl kustomize` output: every Kubernetes object against its
//       kubernetes-models schema, KEDA objects field by field, and the references between objects
//       (Services → pods, ScaledObject → worker Deployment, per-replica target = worker slots, ...).
//   node deploy/validate.mjs grafana <dashboard.json> [--rules-out <file>]
//       Checks the dashboard parses and every panel queries something; --rules-out writes the
//       queries as a Prometheus rules file so promtool can check their syntax.
//
// Dependencies (kubernetes-models, yaml) come from .tools/deploy-validate (QUEUE_DEPLOY_TOOLS
// overrides the folder). Exit code 1 with one line per problem when anything is wrong.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const toolsDir = process.env.QUEUE_DEPLOY_TOOLS ?? resolve(repoRoot, '.tools/deploy-validate');
const requireTool = createRequire(resolve(toolsDir, 'package.json'));

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'render') {
  process.exit(validateRender(rest));
} else if (mode === 'grafana') {
  process.exit(validateGrafana(rest));
} else {
  console.error('usage: validate.mjs render <label> <rendered.yaml> [--no-adapter-check] | grafana <dashboard.json> [--rules-out <file>]');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Rendered overlays

function validateRender(args) {
  const [label, file] = args;
  const adapterCheck = !args.includes('--no-adapter-check');
  const YAML = requireTool('yaml');
  const errors = [];
  const fail = (where, message) => errors.push(`${label}: ${where}: ${message}`);

  const objects = [];
  for (const doc of YAML.parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) {
      doc.errors.forEach(e => fail('YAML', e.message));
      continue;
    }
    const value = doc.toJS();
    if (value != null) objects.push(value);
  }
  if (objects.length === 0) fail('render', 'no objects');

  const id = o => `${o?.kind ?? '?'}/${o?.metadata?.name ?? '?'}`;
  const byKind = kind => objects.filter(o => o.kind === kind);
  const find = (kind, name) => objects.find(o => o.kind === kind && o.metadata?.name === name);

  // Identity and namespace.
  const namespaceObject = byKind('Namespace')[0];
  const namespace = namespaceObject?.metadata?.name ?? 'queue';
  const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'IngressClass', 'ClusterTriggerAuthentication']);
  const seen = new Set();
  for (const o of objects) {
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || !o.metadata?.name) {
      fail(id(o), 'needs apiVersion, kind and metadata.name');
      continue;
    }
    const key = `${o.apiVersion} ${id(o)}`;
    if (seen.has(key)) fail(id(o), 'defined twice');
    seen.add(key);
    if (!clusterScoped.has(o.kind) && o.metadata.namespace !== namespace) {
      fail(id(o), `namespace is ${o.metadata.namespace ?? '(none)'}, expected ${namespace}`);
    }
  }

  // Schemas: every core object through its kubernetes-models class.
  let schemaValidated = 0;
  for (const o of objects) {
    if (o.apiVersion?.startsWith('keda.sh/')) continue;
    const model = modelClass(o.apiVersion, o.kind);
    if (!model) {
      fail(id(o), `no kubernetes-models class for ${o.apiVersion} ${o.kind}: unknown kind, or an API version this validator does not know`);
      continue;
    }
    try {
      new model(o).validate();
      schemaValidated++;
    } catch (e) {
      fail(id(o), `schema: ${e.message}`);
    }
  }

  // The common configuration: the ConfigMap the worker reads through envFrom.
  const workers = byKind('Deployment').filter(d => d.metadata.labels?.['app.kubernetes.io/component'] === 'worker');
  if (workers.length !== 1) fail('render', `expected one worker Deployment (label app.kubernetes.io/component=worker), found ${workers.length}`);
  const worker = workers[0];
  const configName = worker?.spec?.template?.spec?.containers?.[0]?.envFrom?.find(e => e.configMapRef)?.configMapRef?.name;
  const config = configName ? find('ConfigMap', configName) : undefined;
  if (!config) fail(id(worker), `its envFrom ConfigMap ${configName ?? '(none)'} is not in the render`);
  const env = config?.data ?? {};
  const slots = Number(env.Queue__Worker__Slots);
  if (!Number.isInteger(slots) || slots < 1) fail(id(config), `Queue__Worker__Slots must be a positive integer, is ${env.Queue__Worker__Slots}`);
  const workQueue = (env.Queue__Adapters__WorkQueue ?? 'embedded').toLowerCase();

  checkWorkloads();
  checkServicesAndFriends();
  checkConfig();
  const keda = checkKeda();
  checkWorkloadIdentity();
  checkNetworkPolicies();

  if (errors.length > 0) {
    errors.forEach(e => console.error(`FAIL ${e}`));
    return 1;
  }
  const scaling = keda.map(s => s.type === 'metrics-api'
    ? `worker scales ${s.min}..${s.max} on metrics-api GET /scale (desiredWorkers)`
    : `worker scales ${s.min}..${s.max} on ${s.type} ${s.queue}, ${s.target} tasks per replica`).join('; ');
  console.log(`ok   ${label}: ${objects.length} objects (${schemaValidated} schema-validated, ${keda.length ? keda.length + ' ScaledObject' : 'no ScaledObject'}), `
    + `queue=${workQueue} blobs=${env.Queue__Adapters__BlobStore ?? 'filesystem'} coordination=${env.Queue__Adapters__Coordination ?? 'embedded'}`
    + (scaling ? `; ${scaling}` : ''));
  return 0;

  function checkWorkloads() {
    for (const w of [...byKind('Deployment'), ...byKind('StatefulSet')]) {
      const pod = w.spec?.template;
      const spec = pod?.spec ?? {};
      const isQueueService = w.metadata.name.startsWith('queue-');
      const podLabels = pod?.metadata?.labels ?? {};
      const selector = w.spec?.selector?.matchLabels ?? {};
      for (const [k, v] of Object.entries(selector)) {
        if (podLabels[k] !== v) fail(id(w), `selector ${k}=${v} does not match its pod template`);
      }
      const sa = spec.serviceAccountName;
      if (sa && sa !== 'default' && !find('ServiceAccount', sa)) fail(id(w), `ServiceAccount ${sa} is not in the render`);

      const volumes = new Map((spec.volumes ?? []).map(v => [v.name, v]));
      for (const t of w.spec?.volumeClaimTemplates ?? []) volumes.set(t.metadata?.name, { persistentVolumeClaim: {} });
      for (const v of spec.volumes ?? []) {
        if (v.configMap && !v.configMap.optional && !find('ConfigMap', v.configMap.name)) fail(id(w), `volume ${v.name}: ConfigMap ${v.configMap.name} is not in the render`);
        if (v.secret) checkSecretName(`${id(w)} volume ${v.name}`, v.secret.secretName);
      }

      for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
        const where = `${id(w)} container ${c.name}`;
        for (const kind of ['requests', 'limits']) {
          for (const resource of ['cpu', 'memory']) {
            if (c.resources?.[kind]?.[resource] == null) fail(where, `resources.${kind}.${resource} missing`);
          }
        }
        for (const resource of ['cpu', 'memory', 'ephemeral-storage']) {
          const request = quantity(c.resources?.requests?.[resource]);
          const limit = quantity(c.resources?.limits?.[resource]);
          if (request != null && limit != null && request > limit) fail(where, `${resource} request is above its limit`);
        }
        if (!c.livenessProbe) fail(where, 'livenessProbe missing');
        if (!c.readinessProbe) fail(where, 'readinessProbe missing');
        const sc = c.securityContext ?? {};
        if (sc.allowPrivilegeEscalation !== false) fail(where, 'securityContext.allowPrivilegeEscalation must be false');
        if (sc.runAsNonRoot !== true && spec.securityContext?.runAsNonRoot !== true) fail(where, 'runAsNonRoot must be true (pod or container)');
        for (const m of c.volumeMounts ?? []) {
          if (!volumes.has(m.name)) fail(where, `volumeMount ${m.name} has no volume`);
        }
        for (const e of c.envFrom ?? []) {
          if (e.configMapRef && !e.configMapRef.optional && !find('ConfigMap', e.configMapRef.name)) fail(where, `envFrom ConfigMap ${e.configMapRef.name} is not in the render`);
          if (e.secretRef) checkSecretName(where, e.secretRef.name);
        }
        for (const e of c.env ?? []) {
          const cm = e.valueFrom?.configMapKeyRef;
          if (cm && !cm.optional && find('ConfigMap', cm.name)?.data?.[cm.key] == null) fail(where, `env ${e.name}: ConfigMap ${cm.name} has no key ${cm.key}`);
          if (e.valueFrom?.secretKeyRef) checkSecretName(`${where} env ${e.name}`, e.valueFrom.secretKeyRef.name);
        }
        const names = (c.env ?? []).map(e => e.name);
        const dup = names.find((n, i) => names.indexOf(n) !== i);
        if (dup) fail(where, `env ${dup} set twice`);

        if (!isQueueService) continue;
        // Queue's own services: the contract of the images and of deploy/README.md.
        const port8080 = (c.ports ?? []).find(p => p.containerPort === 8080);
        if (!port8080) fail(where, 'no containerPort 8080 (ASPNETCORE_HTTP_PORTS in the image)');
        for (const probe of ['livenessProbe', 'readinessProbe']) {
          const get = c[probe]?.httpGet;
          const port = typeof get?.port === 'string' ? (c.ports ?? []).find(p => p.name === get.port)?.containerPort : get?.port;
          if (get?.path !== '/healthz' || port !== 8080) fail(where, `${probe} must be GET /healthz on 8080`);
        }
        if (sc.readOnlyRootFilesystem !== true) fail(where, 'securityContext.readOnlyRootFilesystem must be true');
        const tmp = (c.volumeMounts ?? []).find(m => m.mountPath === '/tmp');
        if (!tmp || !volumes.get(tmp.name)?.emptyDir) fail(where, 'needs an emptyDir at /tmp (the root filesystem is read-only)');
        if (!(c.envFrom ?? []).some(e => e.configMapRef?.name === configName)) fail(where, `does not read ${configName} through envFrom`);
      }

      if (isQueueService) {
        const annotations = pod?.metadata?.annotations ?? {};
        const expected = { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' };
        for (const [k, v] of Object.entries(expected)) {
          if (annotations[k] !== v) fail(id(w), `pod annotation ${k} must be "${v}", is ${JSON.stringify(annotations[k])}`);
        }
      }
    }

    if (worker) {
      const grace = worker.spec?.template?.spec?.terminationGracePeriodSeconds;
      const drain = seconds(env.Queue__Worker__DrainTimeout ?? '00:00:25');
      if (drain == null) fail(id(config), `Queue__Worker__DrainTimeout is not hh:mm:ss: ${env.Queue__Worker__DrainTimeout}`);
      else if (!(grace > drain)) fail(id(worker), `terminationGracePeriodSeconds (${grace ?? 30}) must exceed the drain timeout (${drain} s) so scale-in does not cut tasks short`);
    }
  }

  function checkServicesAndFriends() {
    const pods = [...byKind('Deployment'), ...byKind('StatefulSet')].map(w => ({ w, labels: w.spec?.template?.metadata?.labels ?? {}, containers: w.spec?.template?.spec?.containers ?? [] }));
    const matching = selector => pods.filter(p => Object.entries(selector ?? {}).every(([k, v]) => p.labels[k] === v));

    for (const s of byKind('Service')) {
      const targets = matching(s.spec?.selector);
      if (!s.spec?.selector || targets.length === 0) {
        fail(id(s), 'its selector matches no pod template');
        continue;
      }
      for (const port of s.spec.ports ?? []) {
        const target = port.targetPort ?? port.port;
        const served = targets.some(t => t.containers.some(c => (c.ports ?? []).some(p => typeof target === 'string' ? p.name === target : p.containerPort === target)));
        if (!served) fail(id(s), `port ${port.name ?? port.port}: no matching container port ${target}`);
      }
    }
    for (const sts of byKind('StatefulSet')) {
      const svc = find('Service', sts.spec?.serviceName);
      if (!svc) fail(id(sts), `serviceName ${sts.spec?.serviceName} is not in the render`);
      else if (svc.spec?.clusterIP !== 'None') fail(id(sts), `serviceName ${svc.metadata.name} must be a headless Service (clusterIP: None)`);
    }
    for (const pdb of byKind('PodDisruptionBudget')) {
      if (matching(pdb.spec?.selector?.matchLabels).length === 0) fail(id(pdb), 'its selector matches no pod template');
    }
    for (const ing of byKind('Ingress')) {
      for (const rule of ing.spec?.rules ?? []) {
        for (const path of rule.http?.paths ?? []) {
          const backend = path.backend?.service;
          const svc = find('Service', backend?.name);
          if (!svc) {
            fail(id(ing), `backend Service ${backend?.name} is not in the render`);
            continue;
          }
          const port = backend.port ?? {};
          if (!(svc.spec?.ports ?? []).some(p => (port.name != null && p.name === port.name) || (port.number != null && p.port === port.number))) {
            fail(id(ing), `backend port ${port.name ?? port.number} is not a port of Service ${svc.metadata.name}`);
          }
        }
      }
    }
  }

  function checkConfig() {
    if (!config) return;
    const where = id(config);
    if (adapterCheck && workQueue === 'embedded') {
      fail(where, 'Queue__Adapters__WorkQueue is embedded: each process would get its own in-memory queue (render an overlay, not the base)');
    }
    if (env.Queue__Adapters__Coordination === 'etcd') {
      const endpoints = (env.Queue__Etcd__Endpoints ?? '').split(',').map(s => s.trim()).filter(Boolean);
      if (endpoints.length === 0) fail(where, 'Queue__Etcd__Endpoints is empty');
      const members = new Set();
      for (const endpoint of endpoints) {
        let url;
        try { url = new URL(endpoint); } catch { fail(where, `Queue__Etcd__Endpoints: not a URL: ${endpoint}`); continue; }
        const [pod, svc, ns, ...tail] = url.hostname.split('.');
        const m = /^(.*)-(\d+)$/.exec(pod ?? '');
        const sts = m && find('StatefulSet', m[1]);
        const ok = sts && sts.spec?.serviceName === svc && ns === namespace && tail.join('.') === 'svc.cluster.local'
          && Number(m[2]) < (sts.spec?.replicas ?? 1) && url.port === '2379';
        if (!ok) fail(where, `Queue__Etcd__Endpoints: ${endpoint} is not <statefulset>-<n>.<headless service>.${namespace}.svc.cluster.local:2379 of an etcd member in this render`);
        else members.add(pod);
      }
      const etcd = find('StatefulSet', 'etcd');
      if (etcd && members.size !== (etcd.spec?.replicas ?? 1)) fail(where, `Queue__Etcd__Endpoints lists ${members.size} of the ${etcd.spec?.replicas} etcd members`);
    }
    if (env.Queue__RabbitMq__Prefetch != null && Number(env.Queue__RabbitMq__Prefetch) !== slots) {
      fail(where, `Queue__RabbitMq__Prefetch (${env.Queue__RabbitMq__Prefetch}) should equal Queue__Worker__Slots (${slots})`);
    }
    for (const [k, v] of Object.entries(env)) {
      if (/password|secret|connectionstring|apikey|accountkey/i.test(k)) fail(where, `${k} looks like a secret: put it in the Secret queue-secrets, not the ConfigMap`);
      if (/AccountKey=|SharedAccessSignature=|:\/\/[^/\s:]+:[^@\s]+@/.test(v)) fail(where, `${k} holds credentials: put them in the Secret queue-secrets`);
    }
  }

  function checkKeda() {
    const scaled = [];
    const auths = byKind('TriggerAuthentication');
    const usedAuths = new Set();
    const known = {
      ScaledObject: ['scaleTargetRef', 'pollingInterval', 'cooldownPeriod', 'initialCooldownPeriod', 'idleReplicaCount', 'minReplicaCount', 'maxReplicaCount', 'fallback', 'advanced', 'triggers'],
      TriggerAuthentication: ['podIdentity', 'secretTargetRef', 'env', 'configMapTargetRef', 'hashiCorpVault', 'azureKeyVault', 'awsSecretManager', 'gcpSecretManager', 'boundServiceAccountToken'],
    };
    // Per trigger type: metadata keys KEDA knows (keda.sh/docs/latest/scalers), the per-replica
    // target, the activation threshold, the adapter it goes with.
    const triggers = {
      'azure-queue': {
        keys: ['queueName', 'queueLength', 'activationQueueLength', 'queueLengthStrategy', 'connectionFromEnv', 'accountName', 'cloud', 'endpointSuffix'],
        target: 'queueLength', activation: 'activationQueueLength', adapter: 'azurequeue', queue: 'queueName',
      },
      rabbitmq: {
        keys: ['host', 'hostFromEnv', 'usernameFromEnv', 'passwordFromEnv', 'protocol', 'mode', 'value', 'activationValue', 'queueName', 'vhostName', 'useRegex', 'pageSize', 'operation', 'timeout', 'excludeUnacknowledged', 'unsafeSsl'],
        target: 'value', activation: 'activationValue', adapter: 'rabbitmq', queue: 'queueName',
      },
      'metrics-api': {
        keys: ['url', 'format', 'valueLocation', 'targetValue', 'activationTargetValue', 'unsafeSsl', 'authMode', 'method', 'aggregateFromKubeServiceEndpoints', 'aggregationType'],
        target: 'targetValue', activation: 'activationTargetValue', adapter: null, queue: null,
      },
      'azure-servicebus': {
        keys: ['queueName', 'topicName', 'subscriptionName', 'namespace', 'connectionFromEnv', 'messageCount', 'activationMessageCount', 'cloud', 'endpointSuffix', 'useRegex', 'entityNameRegex', 'operation'],
        target: 'messageCount', activation: 'activationMessageCount', adapter: 'servicebus', queue: 'queueName',
      },
    };

    for (const so of byKind('ScaledObject')) {
      const where = id(so);
      if (so.apiVersion !== 'keda.sh/v1alpha1') fail(where, `apiVersion must be keda.sh/v1alpha1, is ${so.apiVersion}`);
      const spec = so.spec ?? {};
      for (const k of Object.keys(spec)) if (!known.ScaledObject.includes(k)) fail(where, `spec.${k} is not a ScaledObject field`);
      const ref = spec.scaleTargetRef ?? {};
      if (!ref.name) fail(where, 'spec.scaleTargetRef.name missing');
      else if (ref.name !== worker?.metadata?.name) fail(where, `scaleTargetRef.name ${ref.name} is not the worker Deployment (${worker?.metadata?.name ?? 'none in this render'})`);
      if ((ref.kind ?? 'Deployment') !== 'Deployment' || (ref.apiVersion ?? 'apps/v1') !== 'apps/v1') fail(where, 'scaleTargetRef must be an apps/v1 Deployment');
      if (spec.minReplicaCount !== 0) fail(where, `minReplicaCount must be 0 (scale to zero when idle), is ${spec.minReplicaCount}`);
      if (!Number.isInteger(spec.maxReplicaCount) || spec.maxReplicaCount <= 0) fail(where, `maxReplicaCount must be a positive integer, is ${spec.maxReplicaCount}`);
      for (const k of ['pollingInterval', 'cooldownPeriod']) {
        if (spec[k] != null && !(Number.isInteger(spec[k]) && spec[k] > 0)) fail(where, `${k} must be a positive integer (seconds)`);
      }
      if (worker?.spec?.replicas != null) fail(id(worker), 'sets spec.replicas, which every apply would reset under KEDA; leave it out');
      if (!Array.isArray(spec.triggers) || spec.triggers.length === 0) {
        fail(where, 'spec.triggers is empty');
        continue;
      }
      spec.triggers.forEach((t, i) => {
        const at = `${where} trigger ${i} (${t?.type ?? 'no type'})`;
        if (typeof t?.type !== 'string' || !t.type) { fail(at, 'type missing'); return; }
        if (!t.metadata || typeof t.metadata !== 'object' || Object.keys(t.metadata).length === 0) { fail(at, 'metadata missing'); return; }
        for (const [k, v] of Object.entries(t.metadata)) {
          if (typeof v !== 'string') fail(at, `metadata.${k} must be a string (KEDA's metadata is a string map): quote ${JSON.stringify(v)}`);
        }
        const scaler = triggers[t.type];
        if (!scaler) { fail(at, `trigger type this validator does not know (known: ${Object.keys(triggers).join(', ')})`); return; }
        for (const k of Object.keys(t.metadata)) if (!scaler.keys.includes(k)) fail(at, `metadata.${k} is not a ${t.type} parameter`);

        // Authentication.
        let auth;
        if (t.authenticationRef) {
          const kind = t.authenticationRef.kind ?? 'TriggerAuthentication';
          auth = kind === 'TriggerAuthentication' ? auths.find(a => a.metadata.name === t.authenticationRef.name) : undefined;
          if (!auth) fail(at, `authenticationRef ${kind}/${t.authenticationRef.name} is not in the render`);
          else usedAuths.add(auth.metadata.name);
        }
        const params = new Set([...(auth?.spec?.secretTargetRef ?? []), ...(auth?.spec?.env ?? []), ...(auth?.spec?.configMapTargetRef ?? [])].map(r => r.parameter));
        const podIdentity = auth?.spec?.podIdentity?.provider && auth.spec.podIdentity.provider !== 'none';

        // The per-replica target is the worker's concurrency; one waiting task must wake workers.
        const target = t.metadata[scaler.target];
        if (target == null) fail(at, `metadata.${scaler.target} (per-replica target) missing`);
        else if (t.type === 'metrics-api') {
          // GET /scale already divides by the slots: its desiredWorkers is a worker count.
          if (Number(target) !== 1) fail(at, `metadata.targetValue is ${target}: desiredWorkers is already a worker count, so the target is "1"`);
        } else if (Number(target) !== slots) fail(at, `metadata.${scaler.target} is ${target}, but Queue__Worker__Slots is ${slots}: the per-replica target must be the worker's slots`);
        const activation = t.metadata[scaler.activation];
        if (activation != null && Number(activation) !== 0) {
          fail(at, `metadata.${scaler.activation} is ${activation}: KEDA activates only when the count is greater than it, so a job of ${activation} task(s) would never wake the workers from zero; use "0"`);
        }
        const queueName = t.metadata[scaler.queue];
        if (adapterCheck && scaler.adapter && scaler.adapter !== workQueue) fail(at, `a ${t.type} trigger, but Queue__Adapters__WorkQueue is ${workQueue}`);
        if (t.type === 'metrics-api') {
          const ingress = byKind('Service').find(s => s.metadata.name === 'queue-ingress');
          const port = ingress?.spec?.ports?.[0]?.port;
          const expected = `http://queue-ingress.${ingress?.metadata?.namespace ?? 'queue'}.svc.cluster.local${port && port !== 80 ? `:${port}` : ''}/scale`;
          if (t.metadata.url !== expected) fail(at, `url ${t.metadata.url} is not the ingress Service's /scale (${expected})`);
          if (t.metadata.valueLocation !== 'desiredWorkers') fail(at, `valueLocation must be desiredWorkers (GET /scale), is ${t.metadata.valueLocation}`);
          if ((t.metadata.format ?? 'json') !== 'json') fail(at, 'format must be json');
          const maxWorkers = env.Queue__Scale__MaxWorkers;
          if (maxWorkers != null && Number(maxWorkers) !== spec.maxReplicaCount) fail(at, `maxReplicaCount ${spec.maxReplicaCount} is not Queue__Scale__MaxWorkers (${maxWorkers})`);
        }

        if (t.type === 'rabbitmq') {
          if (t.metadata.mode !== 'QueueLength') fail(at, 'mode must be QueueLength');
          if (!queueName) fail(at, 'metadata.queueName missing');
          const expected = `${env.Queue__RabbitMq__QueuePrefix ?? 'queue.'}tasks`;
          if (adapterCheck && queueName !== expected) fail(at, `queueName ${queueName} is not the tasks queue ${expected} (Queue__RabbitMq__QueuePrefix + tasks)`);
          if (!t.metadata.host && !t.metadata.hostFromEnv && !params.has('host')) fail(at, 'no host: set it through the TriggerAuthentication (secretTargetRef parameter host)');
        } else if (t.type === 'azure-queue') {
          if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(queueName ?? '')) fail(at, `queueName ${queueName} is not a valid Azure queue name (3-63 lowercase letters, digits, single hyphens)`);
          if (podIdentity && !t.metadata.accountName) fail(at, 'accountName is required with pod identity');
          if (!podIdentity && !t.metadata.connectionFromEnv && !params.has('connection')) fail(at, 'no credentials: podIdentity, connectionFromEnv or a connection parameter');
          if (env.Queue__Azure__AccountName && t.metadata.accountName !== env.Queue__Azure__AccountName) {
            fail(at, `accountName ${t.metadata.accountName} is not Queue__Azure__AccountName (${env.Queue__Azure__AccountName})`);
          }
        } else if (t.type === 'azure-servicebus') {
          if (!queueName && !(t.metadata.topicName && t.metadata.subscriptionName)) fail(at, 'queueName, or topicName and subscriptionName, required');
          if (podIdentity && !t.metadata.namespace) fail(at, 'namespace is required with pod identity');
          if (!podIdentity && !t.metadata.connectionFromEnv && !params.has('connection')) fail(at, 'no credentials: podIdentity, connectionFromEnv or a connection parameter');
        }
        scaled.push({ type: t.type, queue: queueName, target, min: spec.minReplicaCount, max: spec.maxReplicaCount });
      });
    }

    for (const ta of auths) {
      const where = id(ta);
      if (ta.apiVersion !== 'keda.sh/v1alpha1') fail(where, `apiVersion must be keda.sh/v1alpha1, is ${ta.apiVersion}`);
      const spec = ta.spec ?? {};
      for (const k of Object.keys(spec)) if (!known.TriggerAuthentication.includes(k)) fail(where, `spec.${k} is not a TriggerAuthentication field`);
      if (Object.keys(spec).length === 0) fail(where, 'spec is empty');
      const provider = spec.podIdentity?.provider;
      if (spec.podIdentity && !['none', 'azure-workload', 'aws', 'aws-eks', 'gcp'].includes(provider)) fail(where, `podIdentity.provider ${provider} is not one KEDA supports`);
      for (const r of spec.secretTargetRef ?? []) {
        if (!r.parameter || !r.name || !r.key) fail(where, 'every secretTargetRef needs parameter, name and key');
        else checkSecretName(`${where} secretTargetRef ${r.parameter}`, r.name);
      }
      if (!usedAuths.has(ta.metadata.name)) fail(where, 'no ScaledObject trigger references it');
    }
    for (const kind of ['ScaledJob', 'ClusterTriggerAuthentication']) {
      for (const o of byKind(kind)) fail(id(o), `${kind} is not expected here`);
    }
    return scaled;
  }

  function checkWorkloadIdentity() {
    for (const sa of byKind('ServiceAccount')) {
      const clientId = sa.metadata.annotations?.['azure.workload.identity/client-id'];
      const pods = byKind('Deployment').filter(d => d.spec?.template?.spec?.serviceAccountName === sa.metadata.name);
      for (const d of pods) {
        const uses = d.spec.template.metadata?.labels?.['azure.workload.identity/use'] === 'true';
        if (clientId && !uses) fail(id(d), `runs as ${id(sa)} (workload identity) but its pods lack the label azure.workload.identity/use: "true"`);
        if (!clientId && uses) fail(id(d), `pods ask for workload identity but ${id(sa)} has no azure.workload.identity/client-id annotation`);
      }
    }
  }

  // Who may connect to what: a default deny; every policy's pods and peers exist in the render (or are
  // marked as another operator's); workers accept nothing; etcd's client port only the engine's pods.
  function checkNetworkPolicies() {
    const policies = byKind('NetworkPolicy');
    if (policies.length === 0) return;
    const pods = [...byKind('Deployment'), ...byKind('StatefulSet')].map(w => ({ w, labels: w.spec?.template?.metadata?.labels ?? {} }));
    const selects = (selector, labels) =>
      Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v)
      && (selector?.matchExpressions ?? []).every(e => e.operator === 'In' ? e.values.includes(labels[e.key])
        : e.operator === 'NotIn' ? !e.values.includes(labels[e.key])
        : e.operator === 'Exists' ? e.key in labels : !(e.key in labels));
    const selected = selector => pods.filter(p => selects(selector, p.labels));
    if (!policies.some(p => Object.keys(p.spec?.podSelector ?? {}).length === 0 && (p.spec?.policyTypes ?? []).includes('Ingress') && !(p.spec?.ingress?.length))) {
      fail('NetworkPolicy', 'no default deny (podSelector {}, policyTypes [Ingress], no ingress rules)');
    }
    for (const p of policies) {
      const external = p.metadata.annotations?.['queue.example.com/selects-external-pods'] === 'true';
      if (!(p.spec?.policyTypes ?? []).includes('Ingress')) fail(id(p), 'policyTypes must include Ingress');
      if (!external && selected(p.spec?.podSelector).length === 0) fail(id(p), 'its podSelector matches no pod template');
      for (const rule of p.spec?.ingress ?? []) {
        for (const peer of rule.from ?? []) {
          if (peer.podSelector && !peer.namespaceSelector && !external && selected(peer.podSelector).length === 0) fail(id(p), 'a from.podSelector matches no pod template');
          if (peer.ipBlock) fail(id(p), 'ipBlock peers are not expected: select pods or namespaces');
        }
      }
      const ruled = selected(p.spec?.podSelector).filter(x => Object.keys(p.spec?.podSelector ?? {}).length > 0);
      if (ruled.some(x => x.labels['app.kubernetes.io/component'] === 'worker') && (p.spec?.ingress ?? []).length > 0) {
        fail(id(p), 'lets connections into worker pods: workers accept none');
      }
      if (ruled.some(x => x.labels['app.kubernetes.io/name'] === 'etcd')) {
        for (const rule of p.spec?.ingress ?? []) {
          const clientPort = (rule.ports ?? []).length === 0 || rule.ports.some(x => x.port === 2379 || x.port === 'client');
          const onlyEngine = (rule.from ?? []).length > 0 && rule.from.every(peer => peer.podSelector && !peer.namespaceSelector
            && selected(peer.podSelector).every(x => ['coordinator', 'worker', 'ingress'].includes(x.labels['app.kubernetes.io/component'])));
          if (clientPort && !onlyEngine) fail(id(p), "etcd's client port must admit only the engine's pods (coordinator, worker, ingress)");
        }
      }
    }
  }

  function checkSecretName(where, name) {
    // deploy/README.md documents these Secrets ("Secrets"); a new one must be documented there too.
    const documented = ['queue-secrets', 'queue-auth', 'queue-etcd-client-tls', 'etcd-server-tls', 'queue-rabbitmq-ca'];
    if (!documented.includes(name)) fail(where, `Secret ${name}: not one of the Secrets deploy/README.md documents (${documented.join(', ')})`);
  }
}

function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  try {
    const module = requireTool(apiVersion === 'v1' ? 'kubernetes-models/v1' : `kubernetes-models/${apiVersion}`);
    return typeof module[kind] === 'function' ? module[kind] : undefined;
  } catch {
    return undefined;
  }
}

// Kubernetes quantities ("500m", "2Gi", "1") as numbers, for comparing a request with its limit.
function quantity(q) {
  if (q == null) return undefined;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(q));
  if (!m) return undefined;
  const scale = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? scale[m[2]] : 1);
}

// A .NET TimeSpan in [d.]hh:mm:ss[.fff] form, in seconds.
function seconds(value) {
  const m = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(String(value).trim());
  return m ? Number(m[1] ?? 0) * 86400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard

function validateGrafana(args) {
  const [file] = args;
  const rulesOut = args.includes('--rules-out') ? args[args.indexOf('--rules-out') + 1] : undefined;
  const errors = [];
  const fail = message => errors.push(`grafana: ${message}`);

  let dashboard;
  try {
    dashboard = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`FAIL grafana: ${file} does not parse: ${e.message}`);
    return 1;
  }
  const input = (dashboard.__inputs ?? []).find(i => i.name === 'DS_PROMETHEUS');
  if (!input || input.type !== 'datasource' || input.pluginId !== 'prometheus') fail('__inputs needs a prometheus datasource input named DS_PROMETHEUS');
  if (!dashboard.title || !dashboard.uid) fail('title and uid required');

  const panels = [];
  for (const p of dashboard.panels ?? []) {
    if (p.type === 'row') panels.push(...(p.panels ?? []));
    else panels.push(p);
  }
  if (panels.length === 0) fail('no panels');
  const ids = new Set();
  const exprs = [];
  for (const p of panels) {
    const name = `panel ${p.id} "${p.title ?? ''}"`;
    if (ids.has(p.id)) fail(`${name}: duplicate id`);
    ids.add(p.id);
    if (!p.gridPos) fail(`${name}: no gridPos`);
    const targets = (p.targets ?? []).filter(t => typeof t.expr === 'string' && t.expr.trim() !== '');
    if (targets.length === 0) fail(`${name}: no target with an expr`);
    for (const t of p.targets ?? []) {
      const ds = t.datasource ?? p.datasource;
      if (ds?.uid !== '${DS_PROMETHEUS}') fail(`${name} target ${t.refId}: datasource must be \${DS_PROMETHEUS}`);
      if (typeof t.expr === 'string' && t.expr.trim() !== '') exprs.push({ name: `${name} ${t.refId}`, expr: t.expr });
    }
  }
  if (rulesOut) {
    // Grafana's range variables become a fixed range so promtool can parse the queries.
    const lines = ['groups:', '  - name: queue-dashboard', '    rules:'];
    exprs.forEach((e, i) => {
      const expr = e.expr.replace(/\$__rate_interval|\$__interval|\$__range|\$\{__rate_interval\}|\$\{__interval\}|\$\{__range\}/g, '5m');
      lines.push(`      - record: queue_dashboard:query_${i}`, `        expr: ${JSON.stringify(expr)}`);
    });
    writeFileSync(rulesOut, lines.join('\n') + '\n');
  }
  if (errors.length > 0) {
    errors.forEach(e => console.error(`FAIL ${e}`));
    return 1;
  }
  console.log(`ok   grafana: ${panels.length} panels, ${exprs.length} queries`);
  return 0;
}
