{{/*
One named template per derived value. Templates include these instead of
recomputing anything, so each rule lives in exactly one place.
*/}}

{{/* Chart name, overridable. */}}
{{- define "odoo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "odoo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>. Call with (dict "root" $ "component" "web"). */}}
{{- define "odoo.componentName" -}}
{{- printf "%s-%s" (include "odoo.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "odoo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change for the life of a release: used in selectors. */}}
{{- define "odoo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "odoo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "component" "web"). */}}
{{- define "odoo.componentSelectorLabels" -}}
{{ include "odoo.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "odoo.labels" -}}
helm.sh/chart: {{ include "odoo.chart" . }}
{{ include "odoo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.odoo.version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: erpops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component's objects. Call with (dict "root" $ "component" "web"). */}}
{{- define "odoo.componentLabels" -}}
{{ include "odoo.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image reference: repository@digest when a digest is set, else repository:tag (tag defaults to the Odoo series). */}}
{{- define "odoo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Values.odoo.version .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount name of a workload. Call with (dict "root" $ "component" "web" "sa" .Values.web.serviceAccount). */}}
{{- define "odoo.serviceAccountName" -}}
{{- if .sa.create -}}
{{- default (include "odoo.componentName" .) .sa.name -}}
{{- else -}}
{{- default "default" .sa.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the ConfigMap holding odoo.conf. */}}
{{- define "odoo.configMapName" -}}
{{- include "odoo.componentName" (dict "root" . "component" "config") -}}
{{- end -}}

{{/* Name of the filestore PVC. */}}
{{- define "odoo.filestoreClaimName" -}}
{{- default (include "odoo.componentName" (dict "root" . "component" "filestore")) .Values.persistence.existingClaim -}}
{{- end -}}

{{/*
UID of the odoo user. The official image creates it with `adduser --system`, so
the number depends on the base image: Debian bullseye (16.0) and Ubuntu jammy
(17.0) give 101, Ubuntu noble (18.0) gives 100 (its _apt user moved to 42).
A UID without a passwd entry breaks Odoo's getpass.getuser() at start.
*/}}
{{- define "odoo.runAsUser" -}}
{{- $uid := .Values.podSecurityContext.runAsUser -}}
{{- if eq (toString $uid) "auto" -}}
{{- if eq .Values.odoo.version "18.0" -}}100{{- else -}}101{{- end -}}
{{- else -}}
{{- $uid | int64 -}}
{{- end -}}
{{- end -}}

{{/*
Path of the readiness probe. /web/health?db_server_status=1 also checks that
PostgreSQL answers (HTTP 500 when it does not). Odoo added the parameter in a
stable fix, odoo/odoo PR #182537 (October 2024), merged into 17.0 and 18.0;
16.0 does not have it (the parameter would be ignored and the probe would
not check the database), so 16.0 stays on plain /web/health. An image built
from 17.0/18.0 sources older than October 2024 also ignores it (no failure).
*/}}
{{- define "odoo.readinessPath" -}}
{{- if eq .Values.odoo.version "16.0" -}}
/web/health
{{- else -}}
/web/health?db_server_status=1
{{- end -}}
{{- end -}}

{{/* Database filter: the configured regex, or exactly the served database. */}}
{{- define "odoo.dbfilter" -}}
{{- default (printf "^%s$" (regexQuoteMeta .Values.database.name)) .Values.odoo.dbfilter -}}
{{- end -}}

{{/* Server-wide modules: base, web, the user's, plus the addons the enabled features need. */}}
{{- define "odoo.serverWideModules" -}}
{{- $modules := list "base" "web" -}}
{{- $modules = concat $modules .Values.odoo.serverWideModules -}}
{{- if .Values.redis.enabled -}}{{- $modules = append $modules "session_redis" -}}{{- end -}}
{{- if .Values.sessionDb.enabled -}}{{- $modules = append $modules "session_db" -}}{{- end -}}
{{- $modules | uniq | join "," -}}
{{- end -}}

{{/*
Modules the Job installs (-i) or updates (-u). Odoo applies each option to
the modules in the matching state only (odoo/modules/loading.py, load_modules,
"STEP 2"): -i marks the *uninstalled* ones of the list `to install`, -u the
*installed* ones `to upgrade`. Passing both (moduleJob.hook=false) is
therefore right on a new database and on every later run alike.
*/}}
{{- define "odoo.jobModules" -}}
{{- $modules := .Values.moduleJob.modules -}}
{{- if .Values.s3.enabled -}}{{- $modules = concat (include "odoo.storageModules" . | splitList ",") $modules -}}{{- end -}}
{{- $modules | uniq | join "," -}}
{{- end -}}

{{/* Addons of attachments in object storage (OCA fs_storage + fs_attachment), installed before anything else. */}}
{{- define "odoo.storageModules" -}}fs_storage,fs_attachment{{- end -}}

{{/*
Odoo shell script of the module Job's storage step: makes the filestore bucket the
default storage of attachments (fs_attachment's fs.storage flag
use_as_default_for_attachments), then moves every attachment written before that
(the base install's) into it, so none stays on the Job's scratch /var/lib/odoo.
Credentials come from AWS_* in the environment (botocore's chain), never the database.
*/}}
{{- define "odoo.storageScript" -}}
import json, os
code = "erpops_filestore"
options = {"client_kwargs": {"region_name": os.environ["AWS_DEFAULT_REGION"]}}
if os.environ.get("AWS_ENDPOINT_URL"):
    options["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
vals = {"name": "erpops filestore", "protocol": "s3", "directory_path": os.environ["ERPOPS_FILESTORE_BUCKET"],
        "options": json.dumps(options), "use_as_default_for_attachments": True}
storage = env["fs.storage"].sudo().search([("code", "=", code)], limit=1)
if storage:
    storage.write(vals)
else:
    storage = env["fs.storage"].sudo().create(dict(vals, code=code))
env.cr.commit()
env["ir.attachment"].sudo().with_context(storage_location=code)._force_storage_to_object_storage()
env.cr.commit()
left = env["ir.attachment"].sudo().search_count([("store_fname", "!=", False), ("store_fname", "not like", code + "://%")])
if left:
    raise SystemExit("%d attachments are still outside %s" % (left, code))
print("attachments stored in fs.storage %s (s3://%s)" % (code, vals["directory_path"]))
{{- end -}}

{{/*
Name of the module Job when it is not a Helm hook: <fullname>-modules-<hash>,
the hash over what makes a module run necessary (image, database, modules),
so a deployer that applies plain objects creates a new Job exactly then.
*/}}
{{- define "odoo.moduleJobName" -}}
{{- $base := include "odoo.componentName" (dict "root" . "component" "modules") | trunc 52 | trimSuffix "-" -}}
{{- $key := printf "%s\n%s\n%s" (include "odoo.image" .) .Values.database.name (include "odoo.jobModules" .) -}}
{{- printf "%s-%s" $base ($key | sha256sum | trunc 10) -}}
{{- end -}}

{{/*
Init container of the non-hook module Job: waits (up to 10 minutes) until
PostgreSQL accepts the Job's credentials through database.host, so a Job
applied together with a new database cluster does not fail on its first
connection (backoffLimit is 0). Uses the image's own python3 and psycopg2;
libpq reads PGUSER/PGPASSWORD from env.
*/}}
{{- define "odoo.waitForDatabaseContainer" -}}
- name: wait-for-database
  image: {{ include "odoo.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - python3
    - -c
    - |
      import sys, time
      import psycopg2
      host, port, dbname, sslmode = sys.argv[1:5]
      deadline = time.monotonic() + 600
      while True:
          try:
              psycopg2.connect(host=host, port=port, dbname=dbname, sslmode=sslmode, connect_timeout=5).close()
              break
          except psycopg2.OperationalError as exc:
              if time.monotonic() > deadline:
                  sys.exit("database %s on %s:%s still unreachable: %s" % (dbname, host, port, exc))
              print("waiting for database %s on %s:%s: %s" % (dbname, host, port, str(exc).strip()), flush=True)
              time.sleep(5)
    - {{ .Values.database.host | quote }}
    - {{ .Values.database.port | int64 | quote }}
    - {{ .Values.database.name | quote }}
    - {{ .Values.database.sslmode | quote }}
  env:
    - name: PGUSER
      valueFrom:
        secretKeyRef:
          name: {{ .Values.database.existingSecret }}
          key: {{ .Values.database.userKey }}
    - name: PGPASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.database.existingSecret }}
          key: {{ .Values.database.passwordKey }}
  securityContext:
    {{- include "odoo.containerSecurityContext" . | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 64Mi
    limits:
      cpu: 200m
      memory: 128Mi
{{- end -}}

{{/* Cron worker processes in the web pods: none when a cron Deployment runs them. */}}
{{- define "odoo.webCronThreads" -}}
{{- if .Values.cron.enabled -}}0{{- else -}}{{ .Values.cron.maxCronThreads | int64 }}{{- end -}}
{{- end -}}

{{/* "true" when the web Deployment may run more than one pod. */}}
{{- define "odoo.webMultiPod" -}}
{{- if .Values.web.autoscaling.enabled -}}
{{- if gt (int .Values.web.autoscaling.maxReplicas) 1 -}}true{{- end -}}
{{- else if gt (int .Values.web.replicaCount) 1 -}}true{{- end -}}
{{- end -}}

{{/* Filestore kind: "s3" (attachments in S3, local dir is scratch), "pvc" or "emptyDir". */}}
{{- define "odoo.filestoreKind" -}}
{{- if .Values.s3.enabled -}}s3{{- else if .Values.persistence.enabled -}}pvc{{- else -}}emptyDir{{- end -}}
{{- end -}}

{{/* "true" when every pod sees the same filestore: S3, or a ReadWriteMany volume. */}}
{{- define "odoo.filestoreShared" -}}
{{- $kind := include "odoo.filestoreKind" . -}}
{{- if or (eq $kind "s3") (and (eq $kind "pvc") (has "ReadWriteMany" .Values.persistence.accessModes)) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the filestore is a volume only one node can mount: pods using it must share that node. */}}
{{- define "odoo.filestoreSingleNode" -}}
{{- if and (eq (include "odoo.filestoreKind" .) "pvc") (not (include "odoo.filestoreShared" .)) -}}true{{- end -}}
{{- end -}}

{{/*
Settings that cannot work together stop the render with the value to change
and the fix, instead of producing pods that lose sessions or attachments. Every
problem is collected first and reported in one failure, as erpops' spec does.
*/}}
{{- define "odoo.validate" -}}
{{- $problems := list -}}
{{- $multi := include "odoo.webMultiPod" . -}}
{{- $replicas := ternary (printf "web.autoscaling.maxReplicas=%d" (int .Values.web.autoscaling.maxReplicas)) (printf "web.replicaCount=%d" (int .Values.web.replicaCount)) .Values.web.autoscaling.enabled -}}
{{- $sharedSessions := or .Values.redis.enabled .Values.sessionDb.enabled (and (eq (include "odoo.filestoreKind" .) "pvc") (include "odoo.filestoreShared" .)) -}}
{{- if and $multi (not $sharedSessions) -}}
{{- $problems = append $problems (printf "%s runs several web pods, but sessions stay in each pod: users would be logged out at random. Fix: set sessionDb.enabled=true (session_db addon) or redis.enabled=true (session_redis addon), or persistence.accessModes=[ReadWriteMany] (sessions on the shared volume), or run a single web pod." $replicas) -}}
{{- end -}}
{{- if and $multi (not (include "odoo.filestoreShared" .)) -}}
{{- $problems = append $problems (printf "%s runs several web pods, but the filestore is a volume only one pod's node can use. Fix: set s3.enabled=true (attachment_s3 addon), or persistence.accessModes=[ReadWriteMany] on a storage class that supports it." $replicas) -}}
{{- end -}}
{{- if and .Values.cron.enabled (not (include "odoo.filestoreShared" .)) -}}
{{- $problems = append $problems "cron.enabled=true runs scheduled actions in separate pods that need the web pods' filestore, but the filestore is a local volume. Fix: set s3.enabled=true or persistence.accessModes=[ReadWriteMany], or set cron.enabled=false so the web pods run cron workers." -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.redis.host) -}}
{{- $problems = append $problems "redis.enabled=true needs redis.host (the Redis Service name)." -}}
{{- end -}}
{{- if and .Values.s3.enabled (or (not .Values.s3.bucket) (not .Values.s3.existingSecret)) -}}
{{- $problems = append $problems "s3.enabled=true needs s3.bucket and s3.existingSecret (a Secret with the access key id and secret access key)." -}}
{{- end -}}
{{- if and .Values.s3.enabled (not (or .Values.s3.region .Values.s3.endpoint)) -}}
{{- $problems = append $problems "s3.enabled=true needs s3.region (AWS) or s3.endpoint (any other S3-compatible store)." -}}
{{- end -}}
{{- if and .Values.web.autoscaling.enabled (lt (int .Values.web.autoscaling.maxReplicas) (int .Values.web.autoscaling.minReplicas)) -}}
{{- $problems = append $problems (printf "web.autoscaling.maxReplicas=%d is below web.autoscaling.minReplicas=%d. Fix: raise maxReplicas." (int .Values.web.autoscaling.maxReplicas) (int .Values.web.autoscaling.minReplicas)) -}}
{{- end -}}
{{- if and .Values.moduleJob.enabled (not .Values.moduleJob.hook) (eq (include "odoo.filestoreKind" .) "pvc") (or (not .Values.persistence.existingClaim) (include "odoo.filestoreSingleNode" .)) -}}
{{- $problems = append $problems "moduleJob.hook=false runs the module Job before the chart's objects, but the filestore is a PVC the chart creates or one only one node can mount. Fix: set s3.enabled=true, persistence.enabled=false, or persistence.existingClaim to a ReadWriteMany claim (with persistence.accessModes=[ReadWriteMany])." -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- $problems = append $problems "ingress.enabled=true needs ingress.host." -}}
{{- end -}}
{{- if gt (int64 .Values.odoo.limits.memorySoft) (int64 .Values.odoo.limits.memoryHard) -}}
{{- $problems = append $problems (printf "odoo.limits.memorySoft=%d is above odoo.limits.memoryHard=%d: workers would be killed before they are recycled. Fix: keep memorySoft below memoryHard." (int64 .Values.odoo.limits.memorySoft) (int64 .Values.odoo.limits.memoryHard)) -}}
{{- end -}}
{{- range $flag := list (list .Values.redis.enabled "session_redis" "redis.enabled") (list .Values.sessionDb.enabled "session_db" "sessionDb.enabled") (list .Values.s3.enabled "fs_storage" "s3.enabled") (list .Values.s3.enabled "fs_attachment" "s3.enabled") -}}
{{- if and (index $flag 0) (not (has (index $flag 1) $.Values.image.addons)) -}}
{{- $problems = append $problems (printf "%s=true needs the %s addon, but image.addons does not list it: the official image lacks it and Odoo would ignore it. Fix: use an image that carries it (images/odoo) and list it in image.addons." (index $flag 2) (index $flag 1)) -}}
{{- end -}}
{{- end -}}
{{- $sidecarPorts := list -}}
{{- range .Values.sidecars }}{{- range .ports }}{{- $sidecarPorts = append $sidecarPorts .name -}}{{- end }}{{- end }}
{{- range $monitor := list (list .Values.podMonitor "podMonitor") (list .Values.serviceMonitor "serviceMonitor") -}}
{{- $values := index $monitor 0 -}}
{{- if and $values.enabled (not (has $values.port $sidecarPorts)) -}}
{{- $problems = append $problems (printf "%s.enabled=true scrapes the container port named %q, but no sidecar declares it: Odoo serves no Prometheus metrics itself. Fix: add an exporter in sidecars with ports: [{name: %s, containerPort: <port>}], or set %s.port to its port name." (index $monitor 1) $values.port $values.port (index $monitor 1)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.podMonitor.enabled .Values.serviceMonitor.enabled -}}
{{- $problems = append $problems "podMonitor.enabled=true and serviceMonitor.enabled=true would both scrape the exporter of every pod (each series twice). Fix: enable one of them." -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "%d problem(s) in the values:\n  - %s" (len $problems) (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}

{{/* odoo.conf. No secret ever goes here: credentials come from Secrets through env, see odoo.args. */}}
{{- define "odoo.config" -}}
[options]
addons_path = {{ join "," .Values.odoo.addonsPath }}
data_dir = /var/lib/odoo
db_host = {{ .Values.database.host }}
db_port = {{ .Values.database.port | int64 }}
db_name = {{ .Values.database.name }}
db_sslmode = {{ .Values.database.sslmode }}
db_maxconn = {{ .Values.database.maxConnections | int64 }}
dbfilter = {{ include "odoo.dbfilter" . }}
list_db = False
proxy_mode = {{ ternary "True" "False" .Values.odoo.proxyMode }}
http_port = 8069
gevent_port = 8072
workers = {{ .Values.web.workers | int64 }}
max_cron_threads = {{ .Values.cron.maxCronThreads | int64 }}
limit_memory_soft = {{ .Values.odoo.limits.memorySoft | int64 }}
limit_memory_hard = {{ .Values.odoo.limits.memoryHard | int64 }}
limit_time_cpu = {{ .Values.odoo.limits.timeCpu | int64 }}
limit_time_real = {{ .Values.odoo.limits.timeReal | int64 }}
limit_time_real_cron = {{ .Values.odoo.limits.timeRealCron | int64 }}
limit_request = {{ .Values.odoo.limits.request | int64 }}
server_wide_modules = {{ include "odoo.serverWideModules" . }}
log_level = {{ .Values.odoo.logLevel }}
{{- with .Values.mail.smtp }}
{{- if .enabled }}
smtp_server = {{ .server }}
smtp_port = {{ .port | int64 }}
smtp_ssl = {{ ternary "True" "False" .ssl }}
{{- with .user }}
smtp_user = {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.odoo.extraConfig }}
{{ $name }} = {{ if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}{{ int64 $value }}{{ else }}{{ $value }}{{ end }}
{{- end }}
{{- end -}}

{{/*
Command-line options shared by every Odoo process. The database credentials are
NOT among them: Odoo leaves db_user/db_password out of the connection when they
are unset (odoo/sql_db.py connection_info_for), so libpq takes PGUSER and
PGPASSWORD from the environment, filled from the Secret. The password never
appears in the process's argv.
*/}}
{{- define "odoo.args" -}}
- --config=/etc/odoo/odoo.conf
{{- end -}}

{{/* Environment of every Odoo container: credentials by Secret reference, addon settings in the open. */}}
{{- define "odoo.env" -}}
- name: PGUSER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.userKey }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.passwordKey }}
{{- if .Values.redis.enabled }}
- name: ODOO_SESSION_REDIS
  value: "1"
- name: ODOO_SESSION_REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: ODOO_SESSION_REDIS_PORT
  value: {{ .Values.redis.port | int64 | quote }}
- name: ODOO_SESSION_REDIS_PREFIX
  value: {{ .Values.redis.prefix | quote }}
- name: ODOO_SESSION_REDIS_EXPIRATION
  value: {{ .Values.redis.expiration | int64 | quote }}
{{- if .Values.redis.existingSecret }}
- name: ODOO_SESSION_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
{{- end }}
{{- if .Values.sessionDb.enabled }}
# session_db: a bare database name makes it connect like Odoo does (db_host, PGUSER/PGPASSWORD)
- name: SESSION_DB_URI
  value: {{ .Values.database.name | quote }}
{{- end }}
{{- if .Values.s3.enabled }}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
- name: ERPOPS_FILESTORE_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- end }}
{{- with .Values.extraEnvVars }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level security context: Pod Security Standards "restricted". */}}
{{- define "odoo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ include "odoo.runAsUser" . }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup | int64 }}
fsGroup: {{ .Values.podSecurityContext.fsGroup | int64 }}
fsGroupChangePolicy: {{ .Values.podSecurityContext.fsGroupChangePolicy }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: Pod Security Standards "restricted" plus a read-only root filesystem. */}}
{{- define "odoo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Filestore volume /var/lib/odoo: the PVC, or an emptyDir (S3 holds the attachments, or the user chose no persistence). */}}
{{- define "odoo.filestoreVolume" -}}
- name: filestore
{{- if eq (include "odoo.filestoreKind" .) "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "odoo.filestoreClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/*
Volumes of the web and cron pods. The root filesystem is read-only, so every
path Odoo writes to is a volume: /tmp, the sessions dir (local sessions when
Redis is off), the filestore, and /etc/odoo where the init container renders
the final odoo.conf (ConfigMap + master password) in memory.
*/}}
{{- define "odoo.volumes" -}}
- name: config-template
  configMap:
    name: {{ include "odoo.configMapName" . }}
- name: config
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if not (include "odoo.sessionsOnClaim" .) }}
- name: sessions
  emptyDir:
    sizeLimit: 512Mi
{{- end }}
{{ include "odoo.filestoreVolume" . }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* "true" when sessions live in /var/lib/odoo/sessions on the shared claim (no other session store). */}}
{{- define "odoo.sessionsOnClaim" -}}
{{- if and (eq (include "odoo.filestoreKind" .) "pvc") (not .Values.redis.enabled) (not .Values.sessionDb.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "odoo.volumeMounts" -}}
- name: config
  mountPath: /etc/odoo
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: filestore
  mountPath: /var/lib/odoo
{{- if not (include "odoo.sessionsOnClaim" .) }}
- name: sessions
  mountPath: /var/lib/odoo/sessions
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod annotations of a component: the chart-wide podAnnotations, then the component's (which win). */}}
{{- define "odoo.podAnnotations" -}}
{{- $merged := merge (deepCopy (index .root.Values .component "podAnnotations" | default dict)) (deepCopy .root.Values.podAnnotations) -}}
{{- with $merged }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Init container that renders /etc/odoo/odoo.conf: the ConfigMap plus
admin_passwd, which Odoo reads from the config file only (there is no command
line option). Without a Secret, a random master password is generated per pod:
list_db = False blocks the database manager anyway, this just avoids Odoo's
built-in default "admin".
*/}}
{{- define "odoo.configInitContainer" -}}
- name: render-config
  image: {{ include "odoo.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  # $$( is Kubernetes' escape for a literal $( : the shell gets command substitution.
  command:
    - /bin/sh
    - -ec
    - |
      umask 077
      cp /etc/odoo-template/odoo.conf /etc/odoo/odoo.conf
      if [ -n "${ODOO_ADMIN_PASSWORD:-}" ]; then
        pw=$$(printf '%s' "$ODOO_ADMIN_PASSWORD" | tr -d '\r\n')
      else
        pw=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
      fi
      printf 'admin_passwd = %s\n' "$pw" >> /etc/odoo/odoo.conf
      if [ -n "${SMTP_PASSWORD:-}" ]; then
        printf 'smtp_password = %s\n' "$$(printf '%s' "$SMTP_PASSWORD" | tr -d '\r\n')" >> /etc/odoo/odoo.conf
      fi
  {{- $smtpSecret := and .Values.mail.smtp.enabled .Values.mail.smtp.existingSecret }}
  {{- if or .Values.odoo.adminPassword.existingSecret $smtpSecret }}
  env:
    {{- if .Values.odoo.adminPassword.existingSecret }}
    - name: ODOO_ADMIN_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.odoo.adminPassword.existingSecret }}
          key: {{ .Values.odoo.adminPassword.key }}
    {{- end }}
    {{- if $smtpSecret }}
    - name: SMTP_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.mail.smtp.existingSecret }}
          key: {{ .Values.mail.smtp.passwordKey }}
    {{- end }}
  {{- end }}
  securityContext:
    {{- include "odoo.containerSecurityContext" . | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      cpu: 100m
      memory: 32Mi
  volumeMounts:
    - name: config-template
      mountPath: /etc/odoo-template
      readOnly: true
    - name: config
      mountPath: /etc/odoo
{{- end -}}

{{/*
Topology spread of a component over zones and nodes. matchLabelKeys keeps a
rolling update's new ReplicaSet from being skewed by the old one.
Call with (dict "root" $ "component" "web").
*/}}
{{- define "odoo.topologySpreadConstraints" -}}
{{- $spread := .root.Values.topologySpread -}}
- maxSkew: {{ $spread.maxSkew | int }}
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ $spread.zoneWhenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "odoo.componentSelectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
- maxSkew: {{ $spread.maxSkew | int }}
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: {{ $spread.hostnameWhenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "odoo.componentSelectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end -}}

{{/* Checksum of odoo.conf: a config change rolls the pods. */}}
{{- define "odoo.configChecksum" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum -}}
{{- end -}}
