//! The simulator against careless and hostile clients, over HTTP: an absurd
//! count gets the cloud's own error at once and creates nothing, and a
//! hundred clients sending valid and invalid requests at the same time leave
//! a `gpufleet sim serve` process answering, with a world that adds up and
//! its memory bounded.

mod common;

use common::{InProcessSim, SimServer};
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const BILLION: u64 = 1_000_000_000;

/// Raw requests of each protocol, as a client that is not an SDK sends them.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    fn new(url: &str) -> Client {
        Client { http: reqwest::Client::new(), url: url.to_string() }
    }

    /// An EC2 Query API call: status and the XML body.
    async fn ec2(&self, body: &str) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .expect("the simulator answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn run_instances(&self, min: u64, max: u64) -> (u16, String) {
        let body = format!(
            "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&InstanceType=p5.48xlarge&MinCount={min}&MaxCount={max}"
        );
        self.ec2(&body).await
    }

    /// A JSON call of Compute Engine or ARM: status and body (`null` if not JSON).
    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url)).bearer_auth("dummy");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn bulk_insert(&self, count: u64) -> (u16, Value) {
        let body = json!({
            "count": count.to_string(),
            "minCount": "1",
            "namePattern": "gf-soak-#####",
            "instanceProperties": {
                "machineType": "a3-highgpu-8g",
                "disks": [{ "boot": true, "initializeParams": { "sourceImage": "projects/p/global/images/family/f" } }],
                "networkInterfaces": [{ "network": "global/networks/default" }],
            },
        });
        let path = "/compute/v1/projects/p/zones/us-central1-a/instances/bulkInsert";
        self.json(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put_scale_set(&self, name: &str, capacity: u64) -> (u16, Value) {
        let body = json!({
            "location": "eastus",
            "sku": { "name": "Standard_ND96isr_H100_v5", "capacity": capacity },
            "properties": {
                "orchestrationMode": "Flexible",
                "platformFaultDomainCount": 1,
                "virtualMachineProfile": {
                    "storageProfile": { "imageReference": {
                        "publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest" } },
                    "osProfile": { "computerNamePrefix": "gf", "adminUsername": "gf" },
                    "networkProfile": {
                        "networkApiVersion": "2020-11-01",
                        "networkInterfaceConfigurations": [{ "name": "nic", "properties": { "primary": true } }],
                    },
                },
            },
        });
        self.json(reqwest::Method::PUT, &scale_set_path(name), Some(body)).await
    }

    async fn patch_scale_set(&self, name: &str, capacity: u64) -> (u16, Value) {
        let body = json!({ "sku": { "capacity": capacity } });
        self.json(reqwest::Method::PATCH, &scale_set_path(name), Some(body)).await
    }

    /// `/_sim/time`: the simulator is not wedged.
    async fn now(&self) -> String {
        let (status, body) = self.json(reqwest::Method::GET, "/_sim/time", None).await;
        assert_eq!(status, 200, "{body}");
        body["now"].as_str().expect("the time").to_string()
    }

    async fn world(&self) -> Value {
        self.json(reqwest::Method::GET, "/_sim/world", None).await.1
    }
}

fn scale_set_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/{name}?api-version=2024-07-01"
    )
}

/// Instances of each cloud in `/_sim/world`: EC2, Compute Engine, Azure.
fn population(world: &Value) -> [usize; 3] {
    ["instances", "gce_instances", "azure_vms"].map(|key| world[key].as_array().map_or(0, Vec::len))
}

/// Regression: with unlimited capacity, RunInstances with MaxCount 10^9
/// aborted the server on allocation, a bulkInsert of 10^9 grew it to 24 GB,
/// and a scale set PUT with capacity 10^9 held the world's lock for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_absurd_counts_get_each_clouds_own_error_and_create_nothing() {
    let sim = InProcessSim::start(None).await;
    let client = Client::new(&sim.url);

    let (status, body) = client.run_instances(1, BILLION).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>InvalidParameterValue</Code>"), "{body}");
    let (status, body) = client.run_instances(1, 1000).await;
    assert_eq!(status, 200, "MaxCount 1000 is within EC2's limit: {body}");

    let (status, body) = client.bulk_insert(BILLION).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["errors"][0]["reason"], "invalid", "{body}");

    for (status, body) in [client.put_scale_set("huge", BILLION).await, client.put_scale_set("huge", 1001).await] {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "InvalidParameter", "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("sku.capacity")), "{body}");
    }
    let (status, body) = client.put_scale_set("small", 1).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = client.patch_scale_set("small", BILLION).await;
    assert_eq!(status, 400, "{body}");

    client.now().await;
    assert_eq!(population(&client.world().await), [1000, 0, 1], "only the requests within limits created anything");
    sim.stop().await;
}

/// 100 clients, 20 requests each, valid and invalid ones of every cloud
/// interleaved, against the `gpufleet sim serve` binary. Every request gets
/// an answer (a 2xx for the valid ones, a 4xx for the others, never a
/// dropped connection or a 5xx), the simulator still tells its time
/// afterwards, the world holds exactly what the successful creates reported,
/// and the server's peak memory stays under [`SOAK_PEAK_RSS_MIB`] (it peaks
/// near 50 MiB: an absurd count that allocated first would blow through it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_soak_100_concurrent_clients_with_valid_and_invalid_requests() {
    const CLIENTS: usize = 100;
    const REQUESTS_EACH: usize = 20;
    let sim = SimServer::start(&[]);
    let client = Client::new(&sim.url);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut created = [0usize; 3];
                for request in 0..REQUESTS_EACH {
                    let (valid, status) = send_one(&client, task, request, &mut created).await;
                    if valid {
                        assert!((200..300).contains(&status), "client {task} request {request}: {status}");
                    } else {
                        assert!((400..500).contains(&status), "client {task} request {request}: {status}");
                    }
                }
                created
            })
        })
        .collect();
    let mut created = [0usize; 3];
    for task in tasks {
        let counts = task.await.expect("no client panicked");
        for (total, count) in created.iter_mut().zip(counts) {
            *total += count;
        }
    }
    client.now().await;
    let world = client.world().await;
    assert_eq!(population(&world), created, "the world holds what the creates reported");
    let peak = sim.peak_rss_mib();
    assert!(peak < SOAK_PEAK_RSS_MIB, "the simulator peaked at {peak} MiB");
}

const SOAK_PEAK_RSS_MIB: u64 = 256;

/// One request of the mix, chosen by position; says whether it was valid and
/// what status it got, and adds what it created to `created`.
async fn send_one(client: &Client, task: usize, request: usize, created: &mut [usize; 3]) -> (bool, u16) {
    let scale_set = format!("soak-{task}");
    match (task + request) % 10 {
        0 => {
            let (status, _) = client.run_instances(1, 2).await;
            created[0] += 2;
            (true, status)
        }
        1 => (false, client.run_instances(1, BILLION).await.0),
        2 => (false, client.ec2("Action=RunInstances&MinCount=%%%").await.0),
        3 => (true, client.ec2("Action=DescribeInstances&Version=2016-11-15&MaxResults=5").await.0),
        4 => {
            let (status, _) = client.bulk_insert(2).await;
            created[1] += 2;
            (true, status)
        }
        5 => (false, client.bulk_insert(BILLION).await.0),
        6 => {
            // Each client's scale set holds what its last PUT asked for.
            let (status, _) = client.put_scale_set(&scale_set, (request % 3 + 1) as u64).await;
            created[2] = request % 3 + 1;
            (true, status)
        }
        7 => (false, client.put_scale_set(&scale_set, BILLION).await.0),
        8 => {
            (false, client.json(reqwest::Method::POST, "/compute/v1/projects/p/zones/nowhere/instances", None).await.0)
        }
        _ => (true, client.json(reqwest::Method::GET, "/_sim/counters", None).await.0),
    }
}
