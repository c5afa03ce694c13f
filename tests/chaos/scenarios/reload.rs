//! Twenty rewrites of the config and the policy, each followed by SIGHUP,
//! under load. Each valid rewrite N changes both files: the policy allows
//! `private-probe-N` only and the config adds the CORS origin
//! `https://vN.chaos.test`; both must be in force once the reload is
//! counted. Every third rewrite is broken (a policy that is not YAML, a CEL
//! error, an unknown config key, a missing secret file, half a config file):
//! it must be refused, counted, and the previous version must stay.

use std::time::Duration;

use crate::gateway::{Broken, Secrets, Spec};
use crate::load::{hs_session, post};
use crate::report::Report;
use crate::scenarios::{Run, hs_sessions, took, until};

const BROKEN: [Broken; 5] = [
    Broken::PolicyYaml,
    Broken::ConfigUnknownKey,
    Broken::PolicyCel,
    Broken::ConfigMissingSecret,
    Broken::ConfigTruncated,
];

pub async fn rewrites(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let spec = Spec::default();
    let run = Run::begin(r, &spec, secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let prober = hs_session(&secrets.jwt, 950)?;
    let ok_metric = r#"channelgate_reloads_total{result="ok"}"#;
    let error_metric = r#"channelgate_reloads_total{result="error"}"#;
    let (mut oks, mut errors) = (run.gw.metric(ok_metric).await?, run.gw.metric(error_metric).await?);
    let mut in_force = 0u32;
    let mut refused = 0usize;

    // (status of private-probe-N, whether origin vN is allowed)
    let observe = |v: u32| {
        let (client, base, signer, token) =
            (run.client.clone(), run.base(), run.signer.clone(), prober.token.clone());
        async move {
            let socket = "77.77".to_owned();
            let channel = format!("private-probe-{v}");
            let form =
                [("socket_id".to_owned(), socket.clone()), ("channel_name".to_owned(), channel.clone())];
            let probe = match post(&client, &format!("{base}/pusher/auth"), &token, &form).await {
                Ok(a)
                    if a.status == 200
                        && a.body
                            == serde_json::json!({"auth": signer.auth(&format!("{socket}:{channel}"))}) =>
                {
                    "allowed".to_owned()
                }
                Ok(a) => a.brief(),
                Err(e) => e.to_string(),
            };
            let origin = format!("https://v{v}.chaos.test");
            let cors = client
                .request(reqwest::Method::OPTIONS, format!("{base}/pusher/auth"))
                .header("origin", &origin)
                .header("access-control-request-method", "POST")
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()
                .and_then(|resp| resp.headers().get("access-control-allow-origin").cloned())
                .is_some_and(|h| h == origin.as_str());
            (probe, cors)
        }
    };

    for i in 1..=20u32 {
        let broken = if i % 3 == 0 { BROKEN[(i as usize / 3 - 1) % BROKEN.len()] } else { Broken::None };
        run.gw.rewrite(&Spec { version: i, broken, ..spec.clone() })?;
        run.gw.sighup();
        let (metric, count) =
            if broken == Broken::None { (ok_metric, &mut oks) } else { (error_metric, &mut errors) };
        let want = *count + 1.0;
        let counted =
            until(Duration::from_secs(5), || async { run.gw.metric(metric).await.is_ok_and(|v| v >= want) })
                .await;
        *count = want;
        if broken == Broken::None {
            let (probe, cors) = observe(i).await;
            let (old_probe, _) = observe(in_force).await;
            r.check(
                &format!("rewrite {i:>2} (valid) + SIGHUP: applied — probe-{i} allowed, probe-{in_force} refused, origin v{i} allowed"),
                counted.is_some() && probe == "allowed" && old_probe == "403 rule_denied" && cors,
                format!("reload {}; probe-{i} {probe}; probe-{in_force} {old_probe}; CORS {cors}", took(counted, Duration::from_secs(5))),
            );
            in_force = i;
        } else {
            refused += 1;
            let (probe, cors) = observe(in_force).await;
            let (new_probe, new_cors) = observe(i).await;
            r.check(
                &format!("rewrite {i:>2} ({broken:?}) + SIGHUP: refused, version {in_force} stays in force"),
                counted.is_some() && probe == "allowed" && cors && new_probe == "403 rule_denied" && !new_cors,
                format!(
                    "reload error {}; probe-{in_force} {probe}, origin v{in_force} {cors}; probe-{i} {new_probe}, origin v{i} {new_cors}",
                    took(counted, Duration::from_secs(5))
                ),
            );
        }
    }
    let logged = run.gw.log_count("reload refused");
    r.check(
        "each refused reload is logged",
        logged >= refused,
        format!("{logged} log lines for {refused} refusals"),
    );
    run.finish("after 20 reloads").await;
    Ok(())
}
